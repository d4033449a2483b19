"""One daemon thread per process that takes items from a queue, in order, for blocking work
the event loop must not wait for (freeing removed files).

Putting an item never blocks and wakes nothing but that thread. The thread starts on the first
item, from the caller's thread (whose per-thread state, such as its namespaces, it copies); a
forked child, which the thread does not survive, starts its own on its first item, and what the
parent had queued stays the parent's.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["QueueThread"]

T = TypeVar("T")


class QueueThread(Generic[T]):
    """Hands every item put to ``handle``, on one daemon thread named ``name``.

    ``handle`` must not raise: an exception would end the thread.
    """

    def __init__(self, name: str, handle: Callable[[T], None]) -> None:
        self.name = name
        self._handle = handle
        self._queue: queue.SimpleQueue[T] | None = None
        self._start_lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def put(self, item: T) -> None:
        """Queue ``item``, starting the thread first if this process has none yet."""
        items = self._queue
        if items is None:
            with self._start_lock:
                if self._queue is None:
                    self._queue = self._start()
                items = self._queue
        items.put(item)

    def _start(self) -> queue.SimpleQueue[T]:
        items: queue.SimpleQueue[T] = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(items,), name=self.name, daemon=True).start()
        return items

    def _serve(self, items: queue.SimpleQueue[T]) -> None:
        while True:
            self._handle(items.get())

    def _forget(self) -> None:
        self._queue = None
        self._start_lock = threading.Lock()
