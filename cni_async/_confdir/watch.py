"""Watching the configuration and plugin directories: inotify as an async iterator.

[`ConfigWatcher`][cni_async.ConfigWatcher] waits on the inotify file descriptor with
``anyio.wait_readable()`` (so it works on asyncio and on trio), coalesces a burst of changes into
one reload, builds a new snapshot and yields the [events][cni_async.ConfigEvent] that lead to it. It
watches the configuration directory, every plugin directory and the plugin sub-directories of the
loaded lists; a watched directory that is deleted is re-armed when it comes back (through a watch on
its nearest existing parent); a queue overflow triggers a full rescan; and when inotify cannot be
used at all it degrades to polling, and says so.

It starts no task of its own: all the work happens inside ``__anext__``, in the task that iterates,
and leaving ``async with`` (or [`ConfigWatcher.aclose`][cni_async.ConfigWatcher.aclose]) releases
the inotify instance and its watches.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import anyio
from asyncinotify import InitFlags, Inotify, Mask, Watch

from .._errors import CNIError
from .._spec.netconf import CONFIG_EXTENSIONS, PLUGIN_DIR_EXTENSIONS
from .events import ConfigEvent, WatcherDegraded, diff_snapshots
from .snapshot import ConfigSnapshot

__all__ = ["ConfigWatcher", "SnapshotBuilder"]

logger = logging.getLogger("cni_async.watch")

SnapshotBuilder = Callable[[ConfigSnapshot | None], Awaitable[ConfigSnapshot]]
"""Builds the next snapshot from the previous one (``None`` for the first)."""

_DIR_MASK: Final = (
    Mask.CREATE
    | Mask.CLOSE_WRITE
    | Mask.MOVED_TO
    | Mask.MOVED_FROM
    | Mask.DELETE
    | Mask.ATTRIB
    | Mask.DELETE_SELF
    | Mask.MOVE_SELF
    | Mask.ONLYDIR
)
_PARENT_MASK: Final = Mask.CREATE | Mask.MOVED_TO | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR


class ConfigWatcher:
    """An async iterator of [`ConfigEvent`][cni_async.ConfigEvent]s for a configuration directory.

    Use it as an async context manager; iterating waits for the next change. The first
    iteration yields the initial state (every network as added, the default, readiness).

    :param conf_dir: the configuration directory
    :param bin_dirs: the plugin directories
    :param build: how to build a snapshot (see [`watch_config`][cni_async.watch_config] for a
        ready-made one)
    :param debounce: seconds of quiet that end a burst of changes (one reload per burst)
    :param max_delay: the longest a reload waits for a burst to end, in seconds
    :param poll_interval: seconds between scans when polling
    :param use_inotify: ``False`` polls from the start
    """

    def __init__(
        self,
        conf_dir: str,
        bin_dirs: Sequence[str],
        build: SnapshotBuilder,
        *,
        default_name: str | None = None,
        debounce: float = 0.05,
        max_delay: float = 1.0,
        poll_interval: float = 2.0,
        use_inotify: bool = True,
    ) -> None:
        self.conf_dir = os.path.abspath(conf_dir)
        self.bin_dirs = tuple(os.path.abspath(d) for d in bin_dirs)
        self._build = build
        self._default_name = default_name
        self.debounce = debounce
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self._use_inotify = use_inotify
        self._inotify: Inotify | None = None
        self._watches: dict[str, Watch] = {}  # watched path -> its watch
        self._parents: dict[str, set[str]] = {}  # a watched parent -> missing dirs below it
        self._direct: set[str] = set()  # watched for their own sake, not only as a parent
        self._fingerprint: object = None
        self._pending: deque[ConfigEvent] = deque()
        self._again = False  # reload once more without waiting (see _reload)
        self.snapshot: ConfigSnapshot | None = None
        self.reloads = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self, *, initial_events: bool = True) -> None:
        """Open inotify (or fall back to polling) and build the first snapshot.

        With ``initial_events=False`` the initial state is not yielded as events (for a caller that
        reads ``snapshot`` directly); a [`WatcherDegraded`][cni_async.WatcherDegraded] still is.

        :raises ConfigError: if the first snapshot cannot be built (an unreadable directory)
        """
        if self._use_inotify:
            try:
                self._inotify = Inotify(flags=InitFlags.CLOEXEC | InitFlags.NONBLOCK)
                # asyncinotify may drop NONBLOCK; reads must never block the event loop.
                flags = fcntl.fcntl(self._inotify.fd, fcntl.F_GETFL)
                fcntl.fcntl(self._inotify.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            except OSError as exc:
                self._degrade(f"inotify is unavailable: {exc}")
        await self._reload(first=True)
        if not initial_events:
            kept = [e for e in self._pending if isinstance(e, WatcherDegraded)]
            self._pending.clear()
            self._pending.extend(kept)

    async def aclose(self) -> None:
        """Release the inotify instance and its watches. Idempotent."""
        self._closed = True
        self._close_inotify()
        await anyio.lowlevel.checkpoint()

    def _close_inotify(self) -> None:
        if self._inotify is not None:
            anyio.notify_closing(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        self._watches.clear()
        self._parents.clear()

    def _degrade(self, reason: str) -> None:
        logger.warning(
            "config watcher falls back to polling every %s s: %s", self.poll_interval, reason
        )
        self._close_inotify()
        self._pending.append(WatcherDegraded(reason, self.poll_interval))

    @property
    def polling(self) -> bool:
        """Whether changes are found by polling rather than inotify."""
        return self._inotify is None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ConfigEvent:
        while not self._pending or self._closed:
            if self._closed:
                raise StopAsyncIteration
            if self._again:
                self._again = False
            else:
                await self._wait_for_change()
            await self._reload()
        return self._pending.popleft()

    # -- rebuilding -----------------------------------------------------------------------

    async def _reload(self, *, first: bool = False) -> None:
        previous = self.snapshot
        # Watch (or fingerprint) the directories before reading them, so that a change made
        # while the snapshot is being built (VERSION probes take a while) is seen next time.
        armed = self._arm() if self._inotify is not None else set()
        if self._inotify is None:  # polling (perhaps since _arm just now)
            self._fingerprint = await anyio.to_thread.run_sync(self._scan_fingerprint)
        try:
            snapshot = await self._build(previous)
        except CNIError as exc:
            if first:
                raise
            # The directory itself is unreadable: keep the last snapshot, retry on the next change.
            logger.warning("config reload failed, keeping the previous configuration: %s", exc)
            snapshot = None
        if snapshot is not None:
            self.reloads += 1
            self.snapshot = snapshot
            self._pending.extend(
                diff_snapshots(previous, snapshot, default_name=self._default_name)
            )
        if self._inotify is not None:
            grown = self._arm() - armed
            # The new snapshot wants directories that were not watched while it was built (a
            # new plugin sub-directory, a directory made again), or inotify was just given up
            # on: what changed before now would go unseen, so read once more.
            if grown or self._inotify is None:
                self._again = True

    def _wanted(self) -> list[str]:
        subs = self.snapshot.sub_directories if self.snapshot else ()
        return [self.conf_dir, *self.bin_dirs, *(os.path.abspath(d) for d in subs)]

    def _arm(self) -> set[str]:
        """Watch every wanted directory, or the nearest existing parent of a missing one;
        return what is watched (nothing if inotify had to be given up)."""
        assert self._inotify is not None
        wanted = self._wanted()
        parents: dict[str, set[str]] = {}
        targets: dict[str, Mask] = {}
        for path in wanted:
            if os.path.isdir(path):
                targets[path] = targets.get(path, Mask.ZERO) | _DIR_MASK
                continue
            parent = os.path.dirname(path)
            while parent != "/" and not os.path.isdir(parent):
                parent = os.path.dirname(parent)
            parents.setdefault(parent, set()).add(path)
            targets[parent] = targets.get(parent, Mask.ZERO) | _PARENT_MASK
        for path in list(self._watches):
            if path not in targets:
                watch = self._watches.pop(path)
                # The kernel may have dropped it already (the directory went away).
                with contextlib.suppress(OSError, ValueError):
                    self._inotify.rm_watch(watch)
        # Always (re-)add: a directory deleted and made again is a new inode with the same path.
        for path, mask in targets.items():
            try:
                self._watches[path] = self._inotify.add_watch(path, mask)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # gone meanwhile: look again
                    logger.debug("cannot watch %s: %s", path, exc)
                    self._again = True
                    continue
                # Out of watches (ENOSPC), no permission...: nothing would be seen any more.
                self._degrade(f"cannot watch {path}: {exc}")
                return set()
        self._parents = parents
        self._direct = {path for path, mask in targets.items() if mask & Mask.CLOSE_WRITE}
        return set(self._watches)

    # -- waiting --------------------------------------------------------------------------

    async def _wait_for_change(self) -> None:
        if self._inotify is None:
            await self._poll()
            return
        try:
            await self._wait_inotify()
        except OSError as exc:
            self._degrade(f"reading inotify failed: {exc}")

    async def _wait_inotify(self) -> None:
        assert self._inotify is not None
        while not await self._drain_relevant():
            await anyio.wait_readable(self._inotify.fd)
        # Coalesce: reload once the burst has been quiet for `debounce`, or after `max_delay`.
        deadline = time.monotonic() + self.max_delay
        while self._inotify is not None and time.monotonic() < deadline:
            with anyio.move_on_after(min(self.debounce, deadline - time.monotonic())) as quiet:
                await anyio.wait_readable(self._inotify.fd)
            if quiet.cancelled_caught:
                break
            await self._drain_relevant()

    async def _drain_relevant(self) -> bool:
        """Read every queued inotify event; whether any of them matters to us."""
        assert self._inotify is not None
        relevant = False
        while True:
            try:
                event = self._inotify.sync_get()
            except BlockingIOError:
                return relevant
            if event is None:
                return relevant
            if self._matters(event.mask, event.watch, event.name):
                relevant = True

    def _matters(self, mask: Mask, watch: Watch | None, name: Path | None) -> bool:
        if mask & (Mask.Q_OVERFLOW | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.IGNORED):
            return True
        if watch is None:
            return True
        directory = os.fspath(watch.path)
        entry = os.fspath(name) if name is not None else ""
        below = os.path.join(directory, entry)
        if any(below in _ancestors(m) for m in self._parents.get(directory, ())):
            return True
        if directory not in self._direct:
            return False  # watched only for a missing directory below it; this is not that
        if directory == self.conf_dir:
            # "..data" and its kin: Kubernetes mounts a ConfigMap as links through a "..data"
            # link, which an update swaps (by rename) for a new "..<timestamp>" directory.
            return (
                entry.endswith(CONFIG_EXTENSIONS)
                or bool(mask & Mask.ISDIR)
                or entry.startswith("..")
            )
        if directory in self.bin_dirs:
            return True
        return entry.endswith(PLUGIN_DIR_EXTENSIONS)

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.poll_interval)
            fingerprint = await anyio.to_thread.run_sync(self._scan_fingerprint)
            if fingerprint != self._fingerprint:
                return

    def _scan_fingerprint(self) -> object:
        seen: list[tuple[str, tuple[int, int, int, int] | None]] = []
        for directory in self._wanted():
            try:
                entries = os.scandir(directory)
            except OSError:
                seen.append((directory, None))
                continue
            with entries:
                for entry in entries:
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    seen.append((entry.path, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)))
        return sorted(seen, key=repr)


def _ancestors(path: str) -> list[str]:
    found = []
    while path not in ("/", ""):
        found.append(path)
        path = os.path.dirname(path)
    return found
