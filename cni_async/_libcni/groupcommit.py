"""Durable, atomic file writes of concurrent tasks, made in batches (a group commit).

A write is durable when it returns: the data was fsync'd, renamed into place and the directory
fsync'd (with ``name_first``, a new file is named first and fsync'd after: see ``GroupCommit``).
Writes that arrive while a batch is being written form the next batch, which one worker thread
writes in a single hop: every temporary file first, then one fsync each (the first one commits
the journal for all of them), the renames, and one fsync per directory. A write that arrives
alone costs what a single atomic write did.

Each write may carry a blocking ``before`` (run in the worker thread just before its file is
written; if it raises, nothing is written for that request) and ``after`` (run once its file is
durable). One request's failure never fails another's. Requests whose ``before`` may wait long
belong in a ``GroupCommit(batch=False)``, which gives each request a hop of its own: in a batch
the wait would hold up every request of it.

Cancellation: a request still waiting for its batch is withdrawn (nothing is written); one whose
batch is being written waits for the batch to finish, so no write is left in flight when the
cancellation propagates. Whoever leads a batch hands the lead to the next waiting request when
it is done, even when it was cancelled.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable

import anyio

from .._errors import CacheError

__all__ = ["GroupCommit", "check_own_directory", "make_directories", "unlink_quietly"]


_NAME_MAX = 255  # bytes in a file name on Linux file systems; our names are ASCII


def unlink_quietly(path: str) -> None:
    """Remove ``path``; errors are ignored."""
    # As libcni: a cache entry that cannot be removed must not fail a DEL that succeeded.
    with contextlib.suppress(OSError):
        os.unlink(path)


def check_own_directory(path: str, *, follow: bool = False) -> None:
    """Refuse ``path`` unless it is missing, or a directory owned by this process's user or by
    root and writable by no one else.

    The cache trusts only directories it (or a root-owned installation) could have made: a
    symlink or another user's directory there would send writes, renames and deletions
    somewhere else. ``follow`` accepts a symbolic link to such a directory (``results/``, which
    an administrator may have moved); our own directories must never be links.

    :raises OSError: ``ENOTDIR`` for a symlink (without ``follow``) or anything but a
        directory, ``EPERM`` for a directory of another user or writable by group or others
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a real directory (a symlink?); refusing to use it", path)
    if st.st_uid not in (os.geteuid(), 0):
        raise OSError(errno.EPERM, f"owned by uid {st.st_uid}; refusing to use it", path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(errno.EPERM, "writable by group or others; refusing to use it", path)


def make_directories(*directories: str) -> None:
    """Create each directory (mode 0700) and its parents, if missing."""
    for directory in directories:
        os.makedirs(directory, mode=0o700, exist_ok=True)


class _Request:
    __slots__ = (
        "after",
        "before",
        "data",
        "directory",
        "error",
        "leads",
        "lock",
        "locked",
        "network",
        "path",
        "taken",
        "wake",
    )

    def __init__(
        self,
        directory: str,
        path: str,
        data: bytes,
        network: str | None,
        before: Callable[[], None] | None,
        after: Callable[[], None] | None,
        lock: bool = False,
    ) -> None:
        self.directory = directory
        self.lock = lock
        self.locked: int | None = None  # with lock: the file's descriptor, holding LOCK_SH
        self.path = path
        self.data = data
        self.network = network
        self.before = before
        self.after = after
        self.error: BaseException | None = None
        self.taken = False  # part of a batch being (or already) written
        self.leads = False  # handed the lead: writes the next batch
        self.wake = anyio.Event()  # set when its batch is done, or when it is handed the lead


class GroupCommit:
    """Atomic, durable writes of files, batched across concurrent callers.

    :param tmp_dir: where temporary files are written before their rename (same filesystem)
    :param batch: ``False`` writes every request in a hop of its own, concurrently with the
        others (for requests whose ``before`` may wait long, which would hold up a batch)
    :param name_first: give a new file (one that replaces nothing) its name before its fsync,
        which then commits name and data together: one journal commit where fsync-then-rename
        takes two. A machine that goes down before the fsync ends may leave the file empty,
        so only for files that nobody else reads and whose readers take an empty one for none
    """

    def __init__(
        self,
        tmp_dir: str,
        *,
        batch: bool = True,
        linked: frozenset[str] = frozenset(),
        name_first: bool = False,
    ) -> None:
        self.tmp_dir = tmp_dir
        self.batch = batch
        self.name_first = name_first
        self.linked = linked  # directories that may be symbolic links (see check_own_directory)
        self._queue: list[_Request] = []
        self._busy = False

    async def write(
        self,
        directory: str,
        path: str,
        data: bytes,
        *,
        network: str | None = None,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Write ``data`` to ``path`` (in ``directory``) atomically and durably.

        ``before`` and ``after`` are blocking functions run in the worker thread that writes
        the file: ``before`` just before it (if it raises, nothing is written), ``after`` once
        the file is durable. Their exceptions propagate unchanged.

        :raises CacheError: if the file could not be written
        """
        request = _Request(directory, path, data, network, before, after)
        if not self.batch:
            await anyio.to_thread.run_sync(
                _write_batch, [request], self.tmp_dir, self.linked, self.name_first
            )
            if request.error is not None:
                raise request.error
            return
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._queue.append(request)
        if not self._busy:
            self._busy = True
            await self._lead()
        else:
            try:
                await request.wake.wait()
            except BaseException:
                if not request.taken and not request.leads:
                    self._queue.remove(request)  # withdrawn: nothing was written
                    raise
                with anyio.CancelScope(shield=True):
                    await self._finish(request)
                raise
            await self._finish(request)
        if request.error is not None:
            raise request.error

    async def write_locked(
        self,
        directory: str,
        path: str,
        data: bytes,
        *,
        before: Callable[[], None] | None = None,
    ) -> int:
        """Like ``write``, in a hop of its own, and return a descriptor of the new file that
        holds a shared ``flock`` on it, taken before the file appeared under ``path``.

        Whoever opens the file later sees it locked until this descriptor, and every copy a
        child process inherited, is closed: a reader never finds it unlocked while its writer
        (or a plugin the writer started) still lives. The caller closes the descriptor.

        :raises CacheError: if the file could not be written (no descriptor is left open)
        """
        request = _Request(directory, path, data, None, before, None, lock=True)
        try:
            await anyio.to_thread.run_sync(
                _write_batch, [request], self.tmp_dir, self.linked, self.name_first
            )
        except BaseException:
            if request.locked is not None:  # cancelled once the worker thread had written it
                os.close(request.locked)
            raise
        if request.error is not None:
            raise request.error
        assert request.locked is not None
        return request.locked

    async def _finish(self, request: _Request) -> None:
        if request.leads and not request.taken:
            await self._lead()
        elif not request.wake.is_set():
            await request.wake.wait()

    async def _lead(self) -> None:
        batch, self._queue = self._queue, []
        for request in batch:
            request.taken = True
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    _write_batch, batch, self.tmp_dir, self.linked, self.name_first
                )
        except Exception as exc:  # noqa: BLE001 - the worker thread itself could not run
            for request in batch:
                request.error = request.error or exc
        finally:
            for request in batch:
                request.wake.set()
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].wake.set()
            else:
                self._busy = False


def _cache_error(request: _Request, exc: OSError) -> CacheError:
    error = CacheError(
        f"failed to write {request.path}: {exc.strerror or exc}; check that "
        f"{request.directory} is a writable directory",
        path=request.path,
        network=request.network,
    )
    error.__cause__ = exc
    return error


def _write_batch(
    batch: list[_Request], tmp_dir: str, linked: frozenset[str], name_first: bool
) -> None:
    """Write every request of ``batch``, recording each one's failure on it (worker thread)."""
    staged: list[tuple[_Request, str, int]] = []
    refused: dict[str, OSError] = {}
    for directory in dict.fromkeys([tmp_dir, *(r.directory for r in batch)]):
        try:
            check_own_directory(directory, follow=directory in linked)
        except OSError as exc:
            refused[directory] = exc
    for request in batch:
        bad = refused.get(tmp_dir) or refused.get(request.directory)
        if bad is not None:
            request.error = _cache_error(request, bad)
            continue
        if request.before is not None:
            try:
                request.before()
            except Exception as exc:  # noqa: BLE001 - raised in the caller's task
                request.error = exc
                continue
        # The temporary file lives beside results/, never in it: Go's GetCachedAttachments
        # lists every file there and would take a leftover temporary file for an attachment.
        suffix = f".{os.getpid()}-{id(request):x}"
        # Cut to fit NAME_MAX: an entry whose own name fits must not fail for its temporary's.
        name = os.path.basename(request.path)[: _NAME_MAX - len(suffix)] + suffix
        tmp = os.path.join(tmp_dir, name)
        try:
            fd = _create(tmp, request.data, request.directory, tmp_dir)
        except OSError as exc:
            request.error = _cache_error(request, exc)
            continue
        staged.append((request, tmp, fd))
        if request.lock:  # before the rename: nobody may see the file unlocked
            request.locked = fd
            # A file system without flock (ENOLCK) leaves the file unlocked: readers then
            # take the writer for gone, which is what they did before there was a lock.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
    # name_first: a file that is new gets its name now, before its fsync. Nothing was there to
    # lose should the machine go down before the fsync ends, and the caller relies on the file
    # only once this returns. The fsync then commits data and name together, and the
    # directory's fsync finds nothing left to do (on ext4).
    named = [name_first and _link_if_absent(tmp, request) for request, tmp, _ in staged]
    written: list[_Request] = []
    for (request, tmp, fd), new in zip(staged, named, strict=True):
        try:
            try:
                os.fsync(fd)
            finally:
                if not request.lock:
                    os.close(fd)
            if not new:  # replacing a file: renamed over it only once durable, never torn
                try:
                    os.rename(tmp, request.path)
                except FileNotFoundError:  # the directory was removed meanwhile
                    make_directories(request.directory)
                    os.rename(tmp, request.path)
        except OSError as exc:
            unlink_quietly(request.path if new else tmp)
            request.error = _cache_error(request, exc)
            _close_locked(request)
            continue
        written.append(request)
    for directory in dict.fromkeys(r.directory for r in written):
        try:
            _fsync_directory(directory)
        except OSError as exc:
            for request in written:
                if request.directory == directory:
                    request.error = _cache_error(request, exc)
                    _close_locked(request)
    for request in written:
        if request.error is None and request.after is not None:
            try:
                request.after()
            except Exception as exc:  # noqa: BLE001 - raised in the caller's task
                request.error = exc


def _link_if_absent(tmp: str, request: _Request) -> bool:
    """Give ``tmp`` its final name if nothing has that name yet, and drop the temporary name;
    ``False`` (``tmp`` left as it was) if something has, or linking is not possible here."""
    try:
        try:
            os.link(tmp, request.path)
        except FileNotFoundError:  # the directory was removed meanwhile
            make_directories(request.directory)
            os.link(tmp, request.path)
    except OSError:  # EEXIST: a file to replace; EPERM: no hard links here; else the rename
        return False  # that follows reports it
    unlink_quietly(tmp)
    return True


def _close_locked(request: _Request) -> None:
    if request.locked is not None:
        os.close(request.locked)
        request.locked = None


def _create(tmp: str, data: bytes, directory: str, tmp_dir: str) -> int:
    """Create ``tmp`` holding ``data`` (not yet fsync'd); return its open descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    # The directories are made when missing (the first write, or removed since), not checked
    # before every write.
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        make_directories(directory, tmp_dir)
        fd = os.open(tmp, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    return fd


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
