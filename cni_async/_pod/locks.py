"""Locks of the pod API: one ``anyio.Lock`` per pod, created on demand and dropped when unused,
and a gate that lets set-ups run together but not alongside a GC verb."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

import anyio


class KeyedLock:
    """A registry of locks, one per key, whose waits are cancellable.

    Operations on one key run one at a time; different keys never wait for each other. A key's
    lock exists only while somebody holds or waits for it, so the registry does not grow with
    the number of pods ever seen.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the body of the ``async with``.

        Waiting is cancellable; a cancelled wait leaves the registry as it was.
        """
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            # A free lock is taken without a round through the event loop (a cancel-shielded
            # checkpoint per operation otherwise); waiting for a held one stays cancellable.
            lock = anyio.Lock(fast_acquire=True)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def locked(self, key: Hashable) -> bool:
        """Whether ``key``'s lock is held right now."""
        entry = self._locks.get(key)
        return entry is not None and entry[0].locked()

    def __len__(self) -> int:
        """How many keys are held or waited for."""
        return len(self._locks)


class SharedGate:
    """Any number of shared holders at once, or one exclusive holder.

    Once an exclusive holder waits, new shared holders wait behind it, so a steady stream of
    shared holders cannot keep it out. Waits are cancellable; a free gate is passed without a
    round through the event loop.
    """

    def __init__(self) -> None:
        self._shared = 0
        self._exclusive = False  # held, or waited for
        self._changed: anyio.Event | None = None

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        """Hold the gate, shared, for the body of the ``async with``."""
        while self._exclusive:
            await self._wait()
        self._shared += 1
        try:
            yield
        finally:
            self._shared -= 1
            if not self._shared:
                self._notify()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the gate alone, once every shared holder has left, for the body."""
        while self._exclusive:
            await self._wait()
        self._exclusive = True
        try:
            while self._shared:
                await self._wait()
            yield
        finally:
            self._exclusive = False
            self._notify()
