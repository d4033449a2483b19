"""The spawner thread: one thread per process starts every plugin, so the event loop never waits
for a fork and exec.

``posix_spawn`` holds the thread that calls it until the kernel has cloned the caller and the
child has exec'd, a quarter of a millisecond on an idle machine and more on a busy one. Here the
loop thread puts a [`Spawn`][] request in a queue and goes on; one daemon thread takes the
requests in order and does every system call that starting a plugin takes: it makes the three
pipes, writes the plugin's stdin (as much as the pipe holds, which is all of it for any usual
configuration), registers the output pipes with the epoll instance the loop watches, starts the
process, closes the child's ends, opens its pidfd and registers that too. The loop learns that
its plugin started (or could not start) from the epoll instance it waits on anyway, and each of
those calls is one the loop thread no longer makes (and one place less where it gives up the
GIL and waits to get it back).

The thread calls the C library's ``posix_spawn`` through ``ctypes``, which releases the GIL while
the kernel works, so the loop runs Python meanwhile. Where that cannot be loaded it falls back
on ``os.posix_spawn``, which keeps the GIL during the call but still takes the rest of the work
off the loop; ``SPAWN_IMPLEMENTATIONS`` names both, and the tests run both.

A request the thread has not taken yet can be cancelled ([`Spawn.settle`][]); one it has taken
runs to its end, which the canceller waits for (the spawn itself takes well under a
millisecond), so a cancelled plugin is always either never started or known, killed and reaped.

Plugins inherit what is per thread in Linux from the spawner thread: its namespaces, CPU
affinity, scheduling priority and security context. The thread starts on the first plugin run,
from the event loop's thread, and copies that thread's; nothing in cni_async changes them after.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from .queuethread import QueueThread

__all__ = ["ONCE", "SPAWN_IMPLEMENTATIONS", "Spawn", "submit"]

SpawnFunction = Callable[[str, Mapping[str, str], Sequence[tuple[int, int]]], int]
"""Start ``path`` (argv ``[path]``) with ``env``, each ``(fd, target)`` dup'ed to ``target``, in a
session of its own, with an empty signal mask and SIGPIPE and SIGXFSZ at their defaults; return
its PID. Raises ``OSError`` if it could not be started, ``ValueError`` for a NUL byte."""

QUEUED: Final = 0
DONE: Final = 1
CANCELLED: Final = 2

_DEFAULT_SIGNALS: Final = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores them; plugins must not
# glibc's and musl's flag values (spawn.h); the structures below are sized well above theirs
_POSIX_SPAWN_SETSIGDEF: Final = 0x04
_POSIX_SPAWN_SETSIGMASK: Final = 0x08
_POSIX_SPAWN_SETSID: Final = 0x80
_STRUCT_BYTES: Final = 1024


def _encoded(text: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError("embedded null byte")
    return data


class _LibcSpawn:
    """``posix_spawn`` of the C library, called through ``ctypes`` (which releases the GIL)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None)
        self._spawn = libc.posix_spawn
        pointer = ctypes.c_void_p
        self._spawn.argtypes = (ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, *[pointer] * 4)
        self._spawn.restype = ctypes.c_int
        self._actions_init = libc.posix_spawn_file_actions_init
        self._actions_dup2 = libc.posix_spawn_file_actions_adddup2
        self._actions_destroy = libc.posix_spawn_file_actions_destroy
        # The attributes never change, so they are built once; posix_spawn only reads them.
        self._attr = ctypes.create_string_buffer(_STRUCT_BYTES)
        empty = ctypes.create_string_buffer(_STRUCT_BYTES)
        defaults = ctypes.create_string_buffer(_STRUCT_BYTES)
        checks = [
            libc.posix_spawnattr_init(self._attr),
            libc.sigemptyset(empty),
            libc.sigemptyset(defaults),
            *(libc.sigaddset(defaults, int(signum)) for signum in _DEFAULT_SIGNALS),
            libc.posix_spawnattr_setsigmask(self._attr, empty),
            libc.posix_spawnattr_setsigdefault(self._attr, defaults),
            libc.posix_spawnattr_setflags(
                self._attr,
                ctypes.c_short(
                    _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGMASK | _POSIX_SPAWN_SETSIGDEF
                ),
            ),
        ]
        if any(checks):  # error numbers, or -1 from the signal set calls: none is expected
            raise OSError(errno.EINVAL, "could not prepare posix_spawn's attributes")

    def __call__(self, path: str, env: Mapping[str, str], dups: Sequence[tuple[int, int]]) -> int:
        raw_path = _encoded(path)
        entries = []
        for key, value in env.items():
            if not key or "=" in key[1:]:  # as os.posix_spawn: a leading "=" is allowed
                raise ValueError("illegal environment variable name")
            entries.append(_encoded(key) + b"=" + _encoded(value))
        argv = (ctypes.c_char_p * 2)(raw_path, None)
        envp = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
        actions = ctypes.create_string_buffer(_STRUCT_BYTES)
        pid = ctypes.c_int()
        if err := self._actions_init(actions):
            raise OSError(err, os.strerror(err))
        try:
            for fd, target in dups:
                if err := self._actions_dup2(actions, fd, target):
                    raise OSError(err, os.strerror(err))
            err = self._spawn(ctypes.byref(pid), raw_path, actions, self._attr, argv, envp)
        finally:
            self._actions_destroy(actions)
        if err:
            raise OSError(err, os.strerror(err), path)
        return pid.value


def _os_spawn(path: str, env: Mapping[str, str], dups: Sequence[tuple[int, int]]) -> int:
    """``os.posix_spawn``: pure Python, but it holds the GIL until the child has exec'd."""
    return os.posix_spawn(
        path,
        [path],
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in dups],
        setsid=True,
        setsigmask=(),
        setsigdef=_DEFAULT_SIGNALS,
    )


def _implementations() -> dict[str, SpawnFunction]:
    found: dict[str, SpawnFunction] = {}
    with contextlib.suppress(OSError, AttributeError):  # no dlopen, or no posix_spawn in it
        found["libc"] = _LibcSpawn()
    found["os"] = _os_spawn
    return found


READY: Final = os.eventfd(1, os.EFD_CLOEXEC)
"""Always readable, never read: registered with a run's epoll instance to wake its loop when the
spawn ends without a pidfd to watch (it failed, or the process is already gone)."""

ONCE: Final = select.EPOLLIN | select.EPOLLONESHOT
"""How the output pipes, the pidfd and [`READY`][] are registered: each is reported once, then
left out until it is re-armed. The loop never takes one out of its epoll instance: it re-arms
a pipe that is still open, and the rest go when their descriptors are closed."""

SPAWN_IMPLEMENTATIONS: Final = _implementations()
"""The ways this process can spawn, best first: ``libc`` where ``ctypes`` reaches it, ``os``."""

spawn_process: SpawnFunction = next(iter(SPAWN_IMPLEMENTATIONS.values()))
"""What the spawner thread calls (looked up for every request, so a test can swap it)."""


class Spawn:
    """One plugin for the spawner thread to start, with ``stdin`` as its input and, if
    ``held`` is given, that descriptor as its descriptor 3.

    The loop thread makes it with the epoll instance it waits on, ``poller``. The spawner
    thread makes the pipes: each parent end (``stdin_w``, ``out_r``, ``err_r``, non-blocking)
    is set here as soon as it exists, and is the loop thread's to read, write and close once
    the request is settled; the child's ends are closed by the spawner thread before anything
    can wake the loop. ``out_r`` and ``err_r`` are registered with ``poller`` for input, and
    ``stdin_w`` is closed once all of ``stdin`` is written, or left registered for output with
    the rest in ``stdin`` when the pipe is full. ``pid`` and ``pidfd`` are set, and the pidfd
    registered with ``poller``, before the state becomes ``DONE``; a spawn that ends with no
    pidfd (``error``, or a process already reaped elsewhere, ``pid`` 0) registers [`READY`][]
    instead, so the loop wakes either way. All but ``stdin_w`` are registered [`ONCE`][].
    """

    __slots__ = (
        "child_fds",
        "env",
        "err_r",
        "error",
        "held",
        "lock",
        "out_r",
        "path",
        "pid",
        "pidfd",
        "poller",
        "state",
        "stdin",
        "stdin_w",
    )

    def __init__(
        self,
        path: str,
        env: Mapping[str, str],
        stdin: bytes,
        held: int | None,
        poller: select.epoll,
    ) -> None:
        self.path = path
        self.env = env
        self.stdin = memoryview(stdin)
        self.held = held
        self.poller = poller
        self.stdin_w = self.out_r = self.err_r = -1
        self.child_fds: list[int] = []
        self.pid = 0
        self.pidfd = -1
        self.error: BaseException | None = None
        self.state = QUEUED
        self.lock = threading.Lock()  # held by the spawner thread while the request is under way

    def parent_fds(self) -> list[int]:
        """The parent ends of the pipes that are open (the loop thread's, once settled)."""
        return [fd for fd in (self.stdin_w, self.out_r, self.err_r) if fd >= 0]

    def settle(self, *, block: bool = False) -> bool:
        """Cancel the request if the spawner thread has not taken it (it then made nothing);
        whether it is settled (never to start, or done), so that ``pid`` and the pipes can be
        trusted.

        Without ``block`` this never waits: ``False`` means the spawn is under way right now.
        With it, it waits for the spawn to end.
        """
        if not self.lock.acquire(blocking=block):
            return False
        try:
            if self.state == QUEUED:
                self.state = CANCELLED
        finally:
            self.lock.release()
        return True

    def run(self) -> None:
        """Start the process (in the spawner thread); never raises."""
        with self.lock:
            if self.state != QUEUED:  # cancelled before anything was made
                return
            try:
                self._start()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop thread, which raises it
                self.error = exc
            if self.pidfd < 0:
                # No pidfd to wake the loop (the spawn failed, or the process is gone): the
                # ready marker does, whatever the output pipes do (a daemon the plugin started
                # may hold them open).
                with contextlib.suppress(OSError, ValueError):
                    self.poller.register(READY, ONCE)
            self.state = DONE

    def _close_child_fds(self) -> None:
        for fd in self.child_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_fds.clear()

    def _make_pipes(self) -> list[tuple[int, int]]:
        """Make the three pipes, write what stdin the pipe takes, register the output pipes;
        the dups that put the child's ends (and ``held``) in place."""
        # Both ends non-blocking in one call; the child's are made blocking below. Each end is
        # kept as soon as it exists, so that a failure half-way leaves it with its closer.
        flags = os.O_NONBLOCK | os.O_CLOEXEC
        child_in, self.stdin_w = os.pipe2(flags)
        self.child_fds.append(child_in)
        self.out_r, child_out = os.pipe2(flags)
        self.child_fds.append(child_out)
        self.err_r, child_err = os.pipe2(flags)
        self.child_fds.append(child_err)
        for fd in self.child_fds:  # plugins expect blocking pipes
            os.set_blocking(fd, True)
        try:
            while self.stdin:
                self.stdin = self.stdin[os.write(self.stdin_w, self.stdin) :]
        except BlockingIOError:  # the pipe is full: the loop writes the rest as it drains
            self.poller.register(self.stdin_w, select.EPOLLOUT)
        else:
            os.close(self.stdin_w)
            self.stdin_w = -1
        self.poller.register(self.out_r, ONCE)
        self.poller.register(self.err_r, ONCE)
        dups = [(fd, target) for target, fd in enumerate(self.child_fds)]
        if self.held is not None:  # last: its dup2 may replace a pipe end the child had at 3
            dups.append((self.held, 3))
        return dups

    def _start(self) -> None:
        # The child's ends are closed before anything can wake the loop thread (the pidfd or
        # the ready marker): once woken, the run may end, and must leave no descriptor behind.
        try:
            pid = spawn_process(self.path, self.env, self._make_pipes())
        finally:
            self._close_child_fds()
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Already exited and reaped by someone else (SIGCHLD ignored): its PID may be
            # another process's by now, so it is not kept (pid stays 0: nothing signals or
            # waits by it, and the loop finds the exit status lost).
            return
        except BaseException:
            _kill_and_reap(pid)
            raise
        # Both before the registration: the loop may see the pidfd ready at once, and then
        # reaps by this PID and closes this descriptor.
        self.pid = pid
        self.pidfd = pidfd
        try:
            self.poller.register(pidfd, ONCE)
        except BaseException:
            os.close(pidfd)
            self.pid = 0
            self.pidfd = -1
            _kill_and_reap(pid)
            raise


def _kill_and_reap(pid: int) -> None:
    """SIGKILL the group of a plugin that cannot be watched, and reap it (blocking, briefly)."""
    try:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


_spawner: Final = QueueThread[Spawn]("cni_async-spawner", lambda request: request.run())


def submit(request: Spawn) -> None:
    """Queue ``request`` for the spawner thread, starting the thread on first use."""
    _spawner.put(request)
