"""The on-disk attachment cache, in libcni's format and at libcni's paths.

An entry lives at ``<cache_dir>/results/<network>-<containerID>-<ifname>`` and holds a compact JSON
object of kind ``cniCacheV1`` with the configuration bytes (base64), the runtime arguments and the
final result, so a node can move between a Go runtime and cni_async in either direction.

Differences from libcni, on purpose: entries are written atomically (temporary file, fsync,
rename, fsync of the directory), so a crash leaves either the old or the new entry, never a torn
one; and the three names are validated before any path is built, on every operation.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import anyio
import msgspec

from .._errors import CacheError, InvalidArgument
from .._files import read_regular_fd, read_regular_file
from .._json import decode_like_go
from .._spec.validation import validate_attachment, validate_container_id
from .freeing import free_later, unlink_keeping
from .groupcommit import GroupCommit, check_own_directory, unlink_quietly

__all__ = [
    "CACHE_KIND",
    "DEFAULT_CACHE_DIR",
    "INTENT_KIND",
    "CacheEntry",
    "Intent",
    "RecordedIntent",
    "ResultCache",
]

logger = logging.getLogger("cni_async")

CACHE_KIND: Final = "cniCacheV1"
_STALE_AFTER: Final = 60.0  # seconds: a temporary of a process that is gone
_STALE_ANYWAY: Final = 3600.0  # seconds: any temporary
DEFAULT_CACHE_DIR: Final = "/var/lib/cni"


class CacheEntry(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One cached attachment, field for field as libcni writes it (and in its key order).

    ``owner`` is ours: the ``owner`` of the [`CNIPlugin`][cni_async.CNIPlugin] that made the
    attachment, written only when one is set. libcni ignores the field (Go's decoder skips
    unknown keys), and its entries have none.
    """

    kind: str = ""
    container_id: str = msgspec.field(default="", name="containerId")
    config: bytes | None = None
    if_name: str = msgspec.field(default="", name="ifName")
    network_name: str = msgspec.field(default="", name="networkName")
    netns: str = ""
    cni_args: list[tuple[str, str]] = msgspec.field(default_factory=list, name="cniArgs")
    capability_args: dict[str, Any] = msgspec.field(default_factory=dict, name="capabilityArgs")
    result: dict[str, Any] | None = None
    owner: str = msgspec.field(default="", name="cniAsyncOwner")


INTENT_KIND: Final = "cniAsyncIntentV1"


class Intent(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What a set-up is about to attach, written (and fsync'd) before its first plugin runs.

    A process that dies in the middle of a set-up leaves its intent behind, so a later teardown
    or GC can find, and DEL, even the attachments whose ADD never finished (libcni caches only
    completed ADDs, so those would leak).
    """

    kind: str = ""
    container_id: str = msgspec.field(default="", name="containerId")
    attachments: list[CacheEntry] = msgspec.field(default_factory=list)


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(CacheEntry)
_intent_decoder: Final = msgspec.json.Decoder(Intent)


def decode_entry(data: bytes) -> CacheEntry | None:
    """Decode a cache file; ``None`` if it is not a ``cniCacheV1`` entry (legacy or garbage)."""
    try:
        entry = decode_like_go(_decoder, data)
    except msgspec.DecodeError:
        return None
    return entry if entry.kind == CACHE_KIND else None


class ResultCache:
    """The cache under ``cache_dir`` (``/var/lib/cni`` by default, as libcni).

    Every method validates the container ID, network name and interface name first
    ([`InvalidArgument`][cni_async.InvalidArgument]), so a path outside ``<cache_dir>/results`` is
    never touched. The fsync'd write runs in a worker thread; reads, listings and unlinks of these
    small local files run inline, where a thread hop would cost more than the call (libcni does all
    of it synchronously).
    """

    def __init__(self, cache_dir: str | None = None, *, owner: str = "") -> None:
        self.cache_dir = cache_dir or DEFAULT_CACHE_DIR
        # Stamped on every entry and intent record written (see CacheEntry.owner).
        self.owner = owner
        self.results_dir = os.path.join(self.cache_dir, "results")
        self.tmp_dir = os.path.join(self.cache_dir, "cni_async-tmp")
        self.intents_dir = os.path.join(self.cache_dir, "cni_async-intents")
        # Intents are not batched: each one waits for its pod's lo bring-up, which the kernel
        # serves under its RTNL lock, held for milliseconds by bridge plugins. A new one is
        # named before its fsync (one journal commit, not two): no plugin of its set-up has
        # run yet, and only we read that directory. Cache entries never are: Go runtimes read
        # results/ too, and libcni fails a DEL on an empty entry.
        self._intents = GroupCommit(self.tmp_dir, batch=False, name_first=True)
        self._results = GroupCommit(self.tmp_dir, linked=frozenset([self.results_dir]))
        self._refused: set[str] = set()

    def _trusted(self, directory: str) -> bool:
        """Whether ``directory`` may be read, listed and deleted from: missing, or a directory
        ``check_own_directory`` trusts (writes elsewhere fail in the group commit with a
        ``CacheError``)."""
        try:
            # results/ is libcni's: an administrator may have moved it and left a link.
            check_own_directory(directory, follow=directory == self.results_dir)
        except OSError as exc:
            if directory not in self._refused:  # once per directory, not on every call
                self._refused.add(directory)
                logger.warning("ignoring cache directory %s: %s", directory, exc.strerror)
            return False
        return True

    def path(self, network: str, container_id: str, ifname: str) -> str:
        """The entry's path; validates the three names first."""
        validate_attachment(container_id, network, ifname)
        return os.path.join(self.results_dir, f"{network}-{container_id}-{ifname}")

    async def read(self, network: str, container_id: str, ifname: str) -> bytes | None:
        """The raw bytes of an entry, or ``None`` when there is none (or it cannot be read)."""
        path = self.path(network, container_id, ifname)
        await anyio.lowlevel.checkpoint()
        return _read_or_none(path) if self._trusted(self.results_dir) else None

    async def write(self, entry: CacheEntry, *, then: Callable[[], None] | None = None) -> None:
        """Write ``entry`` atomically, replacing any previous entry for the same attachment.

        Concurrent writes are made in batches (a group commit: one worker thread hop and one
        directory fsync per batch). ``then`` (a blocking function) runs in the worker thread
        once the entry is durable; it is not run if the write failed, and its exceptions
        propagate unchanged.

        :raises CacheError: if the entry could not be written
        """
        entry.kind = CACHE_KIND
        entry.owner = self.owner
        path = self.path(entry.network_name, entry.container_id, entry.if_name)
        await self._results.write(
            self.results_dir, path, _encoder.encode(entry), network=entry.network_name, after=then
        )

    # -- intents: set-ups in flight ---------------------------------------------------------

    def intent_path(self, container_id: str) -> str:
        validate_container_id(container_id)
        return os.path.join(self.intents_dir, container_id)

    async def write_intent(
        self,
        container_id: str,
        attachments: list[CacheEntry],
        *,
        before: Callable[[], None] | None = None,
    ) -> None:
        """Record, durably, the attachments a set-up of ``container_id`` is about to make.

        Each intent gets a worker-thread hop of its own (unlike cache entries, intents are not
        batched: ``before`` may wait long). ``before`` (a blocking function) runs in that
        thread just before the intent is written; if it raises, nothing is written and its
        exception propagates unchanged.

        :raises CacheError: if it could not be written (then nothing should be attached)
        """
        path, data = self._intent(container_id, attachments)
        await self._intents.write(self.intents_dir, path, data, before=before)

    async def write_intent_held(
        self,
        container_id: str,
        attachments: list[CacheEntry],
        *,
        before: Callable[[], None] | None = None,
    ) -> int:
        """``write_intent`` for a set-up about to run: return a descriptor that holds the new
        record's lock (see ``intent_in_use``).

        Keep it open while the set-up runs, let its plugins inherit it, then close it. A
        process that dies in the middle leaves the lock to the plugins it started, so nobody
        takes the record for abandoned while one of them still runs.

        :raises CacheError: if it could not be written (no descriptor is left open)
        """
        path, data = self._intent(container_id, attachments)
        return await self._intents.write_locked(self.intents_dir, path, data, before=before)

    def _intent(self, container_id: str, attachments: list[CacheEntry]) -> tuple[str, bytes]:
        for entry in attachments:
            validate_attachment(entry.container_id, entry.network_name, entry.if_name)
            entry.owner = entry.owner or self.owner
        path = self.intent_path(container_id)
        intent = Intent(kind=INTENT_KIND, container_id=container_id, attachments=attachments)
        return path, _encoder.encode(intent)

    def intent_in_use(self, container_id: str) -> bool:
        """Whether the set-up that wrote ``container_id``'s record still runs somewhere: its
        process, or a plugin it started, holds the record's lock (in this process too).

        A missing or unreadable record is not in use; nor is one whose lock is free (its
        writer and every plugin of it are gone, or it was written without one).
        """
        return self.look_up_intent(container_id, read=False).in_use

    def look_up_intent(self, container_id: str, *, read: bool = True) -> RecordedIntent:
        """What ``container_id``'s record holds, and whether it is in use (see
        ``intent_in_use``), from one opening of the file; nothing is read unless ``read``."""
        path = self.intent_path(container_id)
        if not self._trusted(self.intents_dir):
            return _NO_INTENT
        try:
            # O_NONBLOCK: a FIFO named like a record must not block the caller.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return _NO_INTENT
        in_use = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                in_use = True
            except OSError:  # no flock on this file system: as before there were locks
                pass
            data = read_regular_fd(fd, path) if read else None
        except OSError:  # a FIFO or device named like a record, or unreadable: no contents
            data = None
        finally:
            os.close(fd)  # also drops the lock just taken
        attachments = self._decode_intent(data, container_id) if data is not None else []
        return RecordedIntent(True, in_use, attachments)

    async def read_intent(self, container_id: str) -> list[CacheEntry]:
        """The attachments an unfinished set-up of ``container_id`` recorded (or none)."""
        await anyio.lowlevel.checkpoint()
        return self.look_up_intent(container_id).attachments

    async def remove_intent(self, container_id: str) -> None:
        """Forget ``container_id``'s intent; a missing one is not an error."""
        remove = self.intent_remover(container_id)
        await anyio.lowlevel.checkpoint()
        remove()

    def intent_remover(self, container_id: str) -> Callable[[], None]:
        """``remove_intent()`` as a blocking function that never fails, for a worker thread
        that has other work to do too."""
        path = self.intent_path(container_id)

        def remove() -> None:
            if self._trusted(self.intents_dir):
                unlink_quietly(path)

        return remove

    async def intents(self) -> dict[str, list[CacheEntry]]:
        """Every recorded intent, by container ID."""
        await anyio.lowlevel.checkpoint()
        if not self._trusted(self.intents_dir):
            return {}
        try:
            names = sorted(os.listdir(self.intents_dir))
        except OSError:
            return {}
        found = {}
        for name in names:
            try:
                path = self.intent_path(name)
            except InvalidArgument:
                continue
            data = _read_or_none(path)
            attachments = self._decode_intent(data, name) if data is not None else []
            if attachments:
                found[name] = attachments
        return found

    @staticmethod
    def _decode_intent(data: bytes, container_id: str) -> list[CacheEntry]:
        try:
            intent = decode_like_go(_intent_decoder, data)
        except msgspec.DecodeError:
            return []
        if intent.kind != INTENT_KIND or intent.container_id != container_id:
            return []
        valid = []
        for entry in intent.attachments:
            try:
                validate_attachment(entry.container_id, entry.network_name, entry.if_name)
            except InvalidArgument:
                continue
            if entry.container_id == container_id:
                valid.append(entry)
        return valid

    async def remove_stale_temporaries(self) -> None:
        """Remove what a write cut short left behind: the temporary files of a process that
        died mid-write, and the empty intent records of a machine that went down mid-write."""

        def remove() -> None:
            self._remove_stale_temporaries()
            self._remove_empty_intents()

        await anyio.to_thread.run_sync(remove)

    def _own_files(self, directory: str) -> list[tuple[str, str]]:
        """Names and paths in one of our own directories; none if it is not to be trusted or
        cannot be listed."""
        if not self._trusted(directory):
            return []
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        return [(name, os.path.join(directory, name)) for name in names]

    def _remove_empty_intents(self) -> None:
        """A new record gets its name before its fsync (see ``GroupCommit``), so a machine
        that went down in between may leave it empty: that set-up had run no plugin yet.
        Removed when older than a minute and unlocked (a set-up in flight holds the lock)."""
        now = time.time()
        for name, path in self._own_files(self.intents_dir):
            try:
                st = os.lstat(path)
                empty = stat.S_ISREG(st.st_mode) and not st.st_size
                if empty and now - st.st_mtime > _STALE_AFTER and not self.intent_in_use(name):
                    unlink_quietly(path)
            except (OSError, InvalidArgument):
                continue

    def _remove_stale_temporaries(self) -> None:
        """A temporary is stale when it is older than a minute and the process that wrote it
        is gone, or older than an hour whatever its PID says.

        A write lasts milliseconds, so the age alone protects the files of writers in other PID
        namespaces (whose PIDs mean nothing here); the hour covers a writer whose PID came back
        (a runtime that is PID 1 of its container, restarted).
        """
        now = time.time()
        for name, path in self._own_files(self.tmp_dir):
            pid = name.rsplit(".", 1)[-1].split("-", 1)[0]
            try:
                age = now - os.stat(path).st_mtime
            except OSError:
                continue
            gone = pid.isdigit() and not os.path.exists(f"/proc/{pid}")
            if (gone and age > _STALE_AFTER) or age > _STALE_ANYWAY:
                unlink_quietly(path)

    async def remove(self, network: str, container_id: str, ifname: str) -> None:
        """Remove an entry; a missing one is not an error.

        Only its name goes here: the file is freed on the freeing thread (see ``free_later``),
        which nobody waits for.
        """
        path = self.path(network, container_id, ifname)
        await anyio.lowlevel.checkpoint()
        if self._trusted(self.results_dir) and (fd := unlink_keeping(path)) is not None:
            free_later(fd)

    async def attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every valid entry, sorted by file name; only ``container_id``'s when it is given.

        Unreadable or foreign files are skipped, as are entries whose names would not pass
        validation.
        """
        await anyio.lowlevel.checkpoint()
        return self._scan(container_id)

    def _scan(self, container_id: str | None) -> list[CacheEntry]:
        try:
            check_own_directory(self.results_dir, follow=True)
        except OSError as exc:  # an empty answer would let GC look as if it had done its work
            raise CacheError(
                f"refusing to list cache directory {self.results_dir}: {exc.strerror}",
                path=self.results_dir,
            ) from exc
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CacheError(
                f"failed to list cache directory {self.results_dir}: {exc.strerror or exc}",
                path=self.results_dir,
            ) from exc
        infix = f"-{container_id}-" if container_id else None
        found = []
        for name in names:
            if infix is not None and infix not in name[1:]:
                continue
            data = _read_or_none(os.path.join(self.results_dir, name))
            entry = decode_entry(data) if data is not None else None
            if entry is None or (container_id and entry.container_id != container_id):
                continue
            try:
                if self.path(entry.network_name, entry.container_id, entry.if_name) != (
                    os.path.join(self.results_dir, name)
                ):
                    continue
            except InvalidArgument:  # names we would refuse: not an entry we may act on
                continue
            found.append(entry)
        return found


class RecordedIntent(NamedTuple):
    """A container's intent record as one look found it."""

    found: bool
    """A file is there under the record's name (whether or not it decodes)."""
    in_use: bool
    """Its lock is held: the set-up that wrote it still runs (see ``intent_in_use``)."""
    attachments: list[CacheEntry]
    """What it records, if it decodes (and was read)."""


_NO_INTENT: Final = RecordedIntent(False, False, [])


def _read_or_none(path: str) -> bytes | None:
    try:
        return read_regular_file(path)
    except OSError:  # missing, unreadable, or a FIFO or device named like an entry
        return None
