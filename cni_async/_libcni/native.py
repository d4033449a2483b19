"""The spawner thread in C, where it was built: ``_spawnloop.c``, loaded through ``ctypes``.

It does what the Python spawner thread (``_libcni.spawner``) does, step for step, with the same
guarantees, on a thread that never takes the GIL: the event loop's thread then has the GIL to
itself for everything but the hand-offs (a few microseconds a run, made without releasing it).
The package's build compiles it (``hatch_build.py``: ``pip install`` and ``.ci/setup`` build it
where a C compiler is found); where the library is missing, cannot be loaded, or was built from
another version of the source, ``NativeRun`` is ``None`` and the executor uses the Python
thread. ``CNI_ASYNC_SPAWNER=python`` in the environment chooses the Python thread too.

The one thing it does differently: a run that the loop thread abandoned (a native second
cancellation on asyncio that waited ``REAP_LIMIT`` seconds in vain) is not logged when it ends.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .spawner import QUEUED, Outcome

__all__ = ["LIBRARY", "NativeRun"]

logger = logging.getLogger("cni_async.exec")

LIBRARY: Final = Path(__file__).with_name("_spawnloop.so")
"""Where the build puts the compiled library."""
_ABI: Final = 1  # SL_ABI in _spawnloop.c: a library built from other source is not used
_NOTE_PIPES_OPEN: Final = 1
_NOTE_UNREAPED: Final = 2
_FS_ENCODING: Final = sys.getfilesystemencoding()


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


def _load(path: Path) -> ctypes.PyDLL | None:
    """The library, set up, or ``None`` (logged at DEBUG) if it cannot be used."""
    if os.environ.get("CNI_ASYNC_SPAWNER") == "python":
        return None
    try:
        # PyDLL: the GIL is kept during each call; none of them waits for more than a lock
        # the spawner thread holds for a few instructions.
        lib = ctypes.PyDLL(str(path))
        abi = lib.sl_abi()
    except (OSError, AttributeError) as exc:
        logger.debug("the C spawner thread is not available (%s): using Python's", exc)
        return None
    if abi != _ABI:
        logger.warning("%s was built from another version of cni_async: rebuild it", path)
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


def _environment(env: Mapping[str, str]) -> tuple[bytes, int]:
    """``env`` as NUL-ended ``KEY=VALUE`` strings, and their count; ``ValueError`` as
    ``os.posix_spawn`` raises it (a NUL byte, an ``=`` in a name after its first byte)."""
    for key in env:
        if not key or "=" in key[1:]:
            raise ValueError("illegal environment variable name")
    # One string, encoded at once (as os.fsencode would each part): a few microseconds a run
    # on the loop's thread rather than seven.
    text = "\0".join([f"{key}={value}" for key, value in env.items()])
    if text.count("\0") != max(len(env) - 1, 0):
        raise ValueError("embedded null byte")
    return text.encode(_FS_ENCODING, "surrogateescape") + b"\0", len(env)


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
        raw_path = os.fsencode(path)
        if b"\0" in raw_path:
            raise ValueError("embedded null byte")
        block, count = _environment(env)
        lib = _lib
        assert lib is not None
        run = lib.sl_new(
            raw_path, block, len(block), count, stdin, len(stdin),
            -1 if held is None else held, done, max_output, kill_grace, pipe_grace,
        )  # fmt: skip
        if not run:
            raise MemoryError("no memory for a plugin run")
        self._lib, self._path, self._run = lib, path, run
        self.done = done
        self.state = QUEUED

    def submit(self) -> None:
        """Hand the run to the spawner thread (starting it on first use)."""
        if (err := self._lib.sl_submit(self._run)) != 0:
            raise OSError(-err, f"could not start the spawner thread: {os.strerror(-err)}")

    def withdraw(self) -> bool:
        """Withdraw the run if the thread has not taken it. Always settled (``True``): the C
        thread takes a run from its queue in one step; ``state`` says which way it went."""
        self.state = self._lib.sl_withdraw(self._run)
        return True

    def request_stop(self, *, now: bool = False) -> None:
        self._lib.sl_stop(self._run, int(now))

    def abandon(self) -> None:
        self._lib.sl_abandon(self._run)

    def close(self) -> None:
        """Close ``done`` and free the run: once it is over (``done`` read) or withdrawn."""
        os.close(self.done)
        self._lib.sl_free(self._run)

    def outcome(self) -> Outcome:
        """What the run came to; read once ``done`` is readable, before ``close``."""
        result = _Result.from_address(self._run)
        if result.notes & _NOTE_PIPES_OPEN:
            logger.warning(
                "plugin %d exited but its output pipes stay open (a child of the plugin?); "
                "killing its process group",
                result.pid,
            )
        if result.notes & _NOTE_UNREAPED:
            logger.error("plugin %d survived SIGKILL; it is left unreaped", result.pid)
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


_lib: Final = _load(LIBRARY)

NativeRun: Final = _NativeRun if _lib is not None else None
"""The C spawner thread's runs, or ``None`` where it is not available."""
