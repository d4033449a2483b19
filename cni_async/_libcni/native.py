"""The spawner thread in C, where it was built: ``_spawnloop.c``, loaded through ``ctypes``.

It does what the Python spawner thread (``_libcni.spawner``) does, step for step, with the same
guarantees, on a thread that never takes the GIL: the event loop's thread then has the GIL to
itself for everything but the hand-offs (a few microseconds a run, made without releasing it).
The package's build compiles it (``hatch_build.py``: ``pip install`` and ``.ci/setup`` build it
where a C compiler is found); where the library is missing, cannot be loaded, or was built from
another version of the source, ``NativeRun`` is ``None`` and the executor uses the Python
thread. ``CNI_ASYNC_SPAWNER=python`` in the environment chooses the Python thread too.

What it does differently: a run that the loop thread abandoned (a native second cancellation
on asyncio that waited ``REAP_LIMIT`` seconds in vain) is not logged when it ends; what it notes
of the others is logged by the loop thread once the run is over, not as it happens; and a run
broken by something unforeseen in the thread is not logged there (its error reaches the caller).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .spawner import QUEUED, WITHDRAWN, Outcome, encoded, environment_block

__all__ = ["LIBRARY", "NativeRun"]

logger = logging.getLogger("cni_async.exec")

LIBRARY: Final = Path(__file__).with_name("_spawnloop.so")
"""Where the build puts the compiled library."""
SOURCE: Final = LIBRARY.with_suffix(".c")
_NOTE_PIPES_OPEN: Final = 1
_NOTE_UNREAPED: Final = 2


class _Result(ctypes.Structure):
    """``struct sl_result``, at the start of every run."""

    _fields_ = (
        ("state", ctypes.c_int32),
        ("error", ctypes.c_int32),
        ("pid", ctypes.c_int32),
        ("status", ctypes.c_int32),
        ("status_lost", ctypes.c_int32),
        ("overflow", ctypes.c_int32),
        ("notes", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("out", ctypes.c_void_p),
        ("out_len", ctypes.c_uint64),
        ("err", ctypes.c_void_p),
        ("err_len", ctypes.c_uint64),
    )


def _load(path: Path, source: Path) -> ctypes.PyDLL | None:
    """The library, set up, or ``None`` (logged) if it cannot be used: missing, or built from
    another source than ``source`` (an editable tree changed since its build)."""
    if os.environ.get("CNI_ASYNC_SPAWNER") == "python":
        return None
    try:
        # PyDLL: the GIL is kept during each call; none of them waits for more than a lock
        # the spawner thread holds for a few instructions.
        lib = ctypes.PyDLL(str(path))
    except OSError as exc:  # not built here (no C compiler), or not loadable
        logger.debug("the C spawner thread is not available (%s): using Python's", exc)
        return None
    try:
        expected = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError as exc:
        logger.warning(
            "%s cannot be checked against its source (%s): using the Python spawner thread",
            path,
            exc,
        )
        return None
    try:
        lib.sl_source_hash.restype = ctypes.c_char_p
        built_from = lib.sl_source_hash().decode()
    except AttributeError:  # built before the library said what it was built from
        built_from = ""
    if built_from != expected:
        logger.warning(
            "%s was not built from the %s beside it: using the Python spawner thread "
            "(reinstall cni_async to rebuild it)",
            path,
            source.name,
        )
        return None
    size, pointer, c_int = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
    lib.sl_new.argtypes = (
        ctypes.c_char_p, ctypes.c_char_p, size, size, ctypes.c_char_p, size,
        c_int, c_int, size, ctypes.c_double, ctypes.c_double,
    )  # fmt: skip
    lib.sl_new.restype = pointer
    for name in ("sl_submit", "sl_withdraw"):
        getattr(lib, name).argtypes = (pointer,)
        getattr(lib, name).restype = c_int
    lib.sl_stop.argtypes = (pointer, c_int)
    lib.sl_stop.restype = None
    for name in ("sl_abandon", "sl_free"):
        getattr(lib, name).argtypes = (pointer,)
        getattr(lib, name).restype = None
    if (err := lib.sl_init()) != 0:
        logger.warning("the C spawner thread could not be set up: %s", os.strerror(-err))
        return None
    return lib


class _NativeRun:
    """One plugin run in the C spawner thread; the loop thread's side of it, as
    ``spawner.Spawn``'s (see there)."""

    __slots__ = ("_lib", "_path", "_run", "done", "state")

    def __init__(
        self,
        path: str,
        env: Mapping[str, str],
        stdin: bytes,
        *,
        held: int | None,
        done: int,
        max_output: int,
        kill_grace: float,
        pipe_grace: float,
    ) -> None:
        raw_path = encoded(path)
        block, count = environment_block(env)
        lib = _lib
        assert lib is not None
        run = lib.sl_new(
            raw_path, block, len(block), count, stdin, len(stdin),
            -1 if held is None else held, done, max_output, kill_grace, pipe_grace,
        )  # fmt: skip
        if not run:
            raise MemoryError("no memory for a plugin run")
        self._lib, self._path = lib, path
        self._run: int | None = run
        self.done = done
        self.state = QUEUED

    def submit(self) -> None:
        """Hand the run to the spawner thread (starting it on first use)."""
        if (err := self._lib.sl_submit(self._live())) != 0:
            raise OSError(-err, f"could not start the spawner thread: {os.strerror(-err)}")

    def withdraw(self) -> bool:
        """Withdraw the run if the thread has not taken it. Always settled (``True``): the C
        thread takes a run from its queue in one step; ``state`` says which way it went."""
        self.state = self._lib.sl_withdraw(self._live())
        return True

    def request_stop(self, *, now: bool = False) -> None:
        self._lib.sl_stop(self._live(), int(now))

    def abandon(self) -> None:
        """Leave ``done`` and the run to the thread; nothing of it may be used after."""
        self._lib.sl_abandon(self._live())
        self._run = None

    def close(self) -> None:
        """Close ``done`` and free the run: once it is over (``done`` read) or withdrawn.
        What the thread noted of a run that ran (a stop that left it unreaped, say) is
        logged here, whether or not its outcome was read."""
        run = self._live()
        notes = pid = 0
        if self.state != WITHDRAWN:
            result = _Result.from_address(run)
            notes, pid = result.notes, result.pid
        self._run = None
        os.close(self.done)
        self._lib.sl_free(run)
        if notes & _NOTE_PIPES_OPEN:
            logger.warning(
                "plugin %d exited but its output pipes stay open (a child of the plugin?); "
                "its process group was killed",
                pid,
            )
        if notes & _NOTE_UNREAPED:
            logger.error("plugin %d survived SIGKILL; it is left unreaped", pid)

    def _live(self) -> int:
        assert self._run is not None, "the run was closed or abandoned"
        return self._run

    def outcome(self) -> Outcome:
        """What the run came to; read once ``done`` is readable, before ``close``."""
        result = _Result.from_address(self._live())
        if result.error:
            error: BaseException | None = OSError(
                result.error, os.strerror(result.error), self._path
            )
        else:
            error = None
        return Outcome(
            stdout=ctypes.string_at(result.out, result.out_len) if result.out_len else b"",
            stderr=ctypes.string_at(result.err, result.err_len) if result.err_len else b"",
            # An unreaped plugin's status is SIGKILL's, as the Python thread reports it.
            returncode=None if result.status_lost else os.waitstatus_to_exitcode(result.status),
            error=error,
            overflow=bool(result.overflow),
        )


_lib: Final = _load(LIBRARY, SOURCE)

NativeRun: Final = _NativeRun if _lib is not None else None
"""The C spawner thread's runs, or ``None`` where it is not available."""
