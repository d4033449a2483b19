"""The spawner thread: one thread per process runs every plugin, from its spawn to its reap, so
the event loop waits for one thing per plugin run: the end of it.

``posix_spawn`` holds the thread that calls it until the kernel has cloned the caller and the
child has exec'd, a quarter of a millisecond on an idle machine and more on a busy one; serving
a plugin's pipes and reaping it take another dozen system calls, each a round through the event
loop or a place where the loop gives up the GIL. Here the loop thread puts a [`Spawn`][] in a
queue, wakes this thread and waits for the run's ``done`` eventfd. This thread, with an epoll
instance of its own over every run in flight, makes each run's pipes, writes its stdin, starts
it, reads its output (capping stdout, keeping stderr's tail), reaps it, and then writes
``done``. A round through the event loop costs the loop about 0.1 ms of CPU however little it
carries, and this leaves one per run.

What the executor promises stays here, step for step:

* a run withdrawn while queued ([`Spawn.withdraw`][]) never starts; one asked to stop while its
  spawn is under way is stopped as soon as the spawn ends (well under a millisecond);
* a stop ([`Spawn.request_stop`][]) sends SIGTERM to the plugin alone, gives the rest of its
  process group up to ``kill_grace`` seconds to exit, then SIGKILLs the group; with ``now`` it
  SIGKILLs the group at once;
* a plugin whose stdout passes ``max_output`` has its group SIGKILLed;
* once the plugin has exited, its pipes get ``pipe_grace`` seconds to close (a child of it may
  hold them); then the group is SIGKILLed;
* the group is always signalled before the plugin is reaped, while its zombie still pins the
  process group ID, so a recycled PID never receives our signal; a SIGKILLed plugin that does
  not exit within ``REAP_LIMIT`` seconds (stuck in the kernel) is left unreaped, logged.

The thread calls the C library's ``posix_spawn`` through ``ctypes``, which releases the GIL while
the kernel works, so the loop runs Python meanwhile. Where that cannot be loaded it falls back
on ``os.posix_spawn``, which keeps the GIL during the call; ``SPAWN_IMPLEMENTATIONS`` names
both, and the tests run both.

Plugins inherit what is per thread in Linux from the spawner thread: its namespaces, CPU
affinity, scheduling priority and security context. The thread starts on the first plugin run,
from the event loop's thread, and copies that thread's; nothing in cni_async changes them after.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import heapq
import itertools
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple

__all__ = [
    "REAP_LIMIT",
    "SPAWN_IMPLEMENTATIONS",
    "Outcome",
    "Spawn",
    "encoded",
    "environment_block",
]

logger = logging.getLogger("cni_async.exec")

SpawnFunction = Callable[[str, Mapping[str, str], Sequence[tuple[int, int]]], int]
"""Start ``path`` (argv ``[path]``) with ``env``, each ``(fd, target)`` dup'ed to ``target``, in a
session of its own, with an empty signal mask and SIGPIPE and SIGXFSZ at their defaults; return
its PID. Raises ``OSError`` if it could not be started, ``ValueError`` for a NUL byte."""


_DEFAULT_SIGNALS: Final = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores them; plugins must not
# glibc's and musl's flag values (spawn.h); the structures below are sized well above theirs
_POSIX_SPAWN_SETSIGDEF: Final = 0x04
_POSIX_SPAWN_SETSIGMASK: Final = 0x08
_POSIX_SPAWN_SETSID: Final = 0x80
_STRUCT_BYTES: Final = 1024
_FS_ENCODING: Final = sys.getfilesystemencoding()


def environment_block(env: Mapping[str, str]) -> tuple[bytes, int]:
    """``env`` as NUL-ended ``KEY=VALUE`` strings in one block, and their count;
    ``ValueError`` as ``os.posix_spawn`` raises it (a NUL byte, an ``=`` in a name after its
    first byte, where a leading one is allowed)."""
    for key in env:
        if not key or "=" in key[1:]:
            raise ValueError("illegal environment variable name")
    # One string, encoded at once (as os.fsencode would each part): 2.6 us here rather than 7.
    text = "\0".join([f"{key}={value}" for key, value in env.items()])
    if text.count("\0") != max(len(env) - 1, 0):
        raise ValueError("embedded null byte")
    return text.encode(_FS_ENCODING, "surrogateescape") + b"\0", len(env)


def encoded(text: str) -> bytes:
    """``text`` as ``os.posix_spawn`` encodes a path; ``ValueError`` for a NUL byte."""
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
        raw_path = encoded(path)
        block, count = environment_block(env)
        entries = block.split(b"\0")[:count]
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


SPAWN_IMPLEMENTATIONS: Final = _implementations()
"""The ways this process can spawn, best first: ``libc`` where ``ctypes`` reaches it, ``os``."""

spawn_process: SpawnFunction = next(iter(SPAWN_IMPLEMENTATIONS.values()))
"""What the spawner thread calls (looked up for every request, so a test can swap it)."""

QUEUED: Final = 0
RUNNING: Final = 1  # started (or failed to): the spawner thread's until FINISHED
FINISHED: Final = 2  # done written; the results can be read
WITHDRAWN: Final = 3  # never taken: nothing was made

_STDERR_TAIL: Final = 16 * 1024
_READ_SIZE: Final = 65536
_READS_PER_EVENT: Final = 16  # a flood cannot hold the thread from the other runs
REAP_LIMIT: Final = 10.0
"""Seconds a SIGKILLed plugin is waited for: only one in uninterruptible sleep outlives it."""
_GROUP_POLL: Final = 0.01  # how often a stopping plugin's group is looked at
_IN: Final = select.EPOLLIN | select.EPOLLONESHOT
_OUT: Final = select.EPOLLOUT | select.EPOLLONESHOT


def _group_has_others(pgid: int) -> bool:
    """Whether a process other than the group leader ``pgid`` is in process group ``pgid``.

    When ``/proc`` cannot be listed (out of descriptors, say) the answer is yes: the caller
    then waits out its grace period and kills the group, rather than fail a cancellation.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit() or int(name) == pgid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp; a zombie has already finished its work.
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


class Outcome(NamedTuple):
    """What a plugin run came to, once over."""

    stdout: bytes
    stderr: bytes  # its last 16 KiB
    returncode: int | None  # None: something else reaped the plugin
    error: BaseException | None  # why it could not be started, or what broke the run
    overflow: bool  # stdout passed max_output: the group was killed


class Spawn:
    """One plugin run, from its spawn to its reap, for the spawner thread.

    The loop thread makes it with ``done``, an eventfd that the spawner thread writes once the
    run is over (``FINISHED``): then ``stdout``, ``stderr`` (its last 16 KiB), ``returncode``
    (``None`` if something else reaped the plugin), ``error`` (why it could not be started, or
    what broke the run in the spawner thread) and ``overflow`` (stdout passed ``max_output``;
    the group was killed) can be read. ``done`` is the loop thread's to close, unless it
    [`abandon`][cni_async._libcni.spawner.Spawn.abandon]s it. Every other descriptor of the run
    is the spawner thread's.
    """

    __slots__ = (
        "_armed",
        "_epoll",
        "_exited",
        "_owner",
        "_pipe_deadline",
        "_stop",
        "_stop_deadline",
        "abandoned",
        "child_fds",
        "deadline",
        "done",
        "env",
        "err_r",
        "error",
        "held",
        "kill_grace",
        "lock",
        "max_output",
        "out_r",
        "overflow",
        "path",
        "pid",
        "pidfd",
        "pipe_grace",
        "returncode",
        "state",
        "stderr",
        "stdin",
        "stdin_w",
        "stdout",
    )

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
        self.path = path
        self.env = env
        self.stdin = memoryview(stdin)
        self.held = held
        self.done = done
        self.max_output = max_output
        self.kill_grace = kill_grace
        self.pipe_grace = pipe_grace
        self.stdin_w = self.out_r = self.err_r = self.pidfd = -1
        self.child_fds: list[int] = []
        self.pid = 0
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.returncode: int | None = None
        self.error: BaseException | None = None
        self.overflow = False
        self.abandoned = False
        self.state = QUEUED
        # Held by the spawner thread while it starts the run, and for the hand-overs of done.
        self.lock = threading.Lock()
        self.deadline: float | None = None  # when the thread must look at this run again
        self._stop: str | None = None  # "term" or "kill", once asked
        self._stop_deadline = 0.0
        self._pipe_deadline: float | None = None
        self._exited = False
        self._armed: set[int] = set()  # registered and not yet reported (one-shot)
        self._owner: dict[int, Spawn] = {}
        self._epoll: select.epoll | None = None

    # -- the loop thread's side -----------------------------------------------------------

    def submit(self) -> None:
        """Hand the run to the spawner thread, starting the thread on first use."""
        _runner.submit(self)

    def close(self) -> None:
        """Close ``done``: once the run is over (``done`` read) or withdrawn."""
        os.close(self.done)

    def outcome(self) -> Outcome:
        """What the run came to; read once ``done`` is readable."""
        return Outcome(
            bytes(self.stdout), bytes(self.stderr), self.returncode, self.error, self.overflow
        )

    def withdraw(self) -> bool:
        """Withdraw the run if the spawner thread has not taken it; ``False`` if its spawn is
        under way right now (never waits). ``True`` means settled: ``state`` tells whether it
        was withdrawn (``WITHDRAWN``) or runs (or ran) in the spawner thread."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.state == QUEUED:
                self.state = WITHDRAWN
        finally:
            self.lock.release()
        return True

    def request_stop(self, *, now: bool = False) -> None:
        """Ask the spawner thread to stop the plugin (see the module's docstring); ``done``
        follows once it is reaped. A run already over is left as it is."""
        self._stop = "kill" if now else (self._stop or "term")
        _runner.poke(self)

    def abandon(self) -> None:
        """Leave ``done`` to the spawner thread, which closes it when the run is over (the loop
        thread stopped waiting for it); closes it now if it is over already."""
        with self.lock:
            if self.state in (FINISHED, WITHDRAWN):
                os.close(self.done)
            else:
                self.abandoned = True

    # -- the spawner thread's side --------------------------------------------------------

    def start(self, epoll: select.epoll, owner: dict[int, Spawn]) -> None:
        """Start the run, unless withdrawn; never raises."""
        with self.lock:
            if self.state != QUEUED:  # withdrawn before anything was made
                return
            self.state = RUNNING
            self._epoll, self._owner = epoll, owner
            try:
                self._start()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop thread, which raises it
                self.error = exc
        if self.error is not None:  # not started
            self._finish()
            return
        if self.pid == 0:
            # Gone and reaped by someone else before it could be watched (its PID may be
            # another process's by now: nothing signals or waits by it).
            self._exited = True
        if self._stop is not None:  # asked to stop while it was being started
            self.on_stop()
        self._advance()

    def _start(self) -> None:
        # The child's ends are closed before anything else: once the run is over, it must leave
        # no descriptor behind.
        try:
            pid = spawn_process(self.path, self.env, self._make_pipes())
        finally:
            self._close_child_fds()
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # already exited and reaped by someone else (SIGCHLD ignored)
            return
        except BaseException:
            _kill_and_reap(pid)
            raise
        self.pid, self.pidfd = pid, pidfd
        self._register(pidfd, _IN)

    def _close_child_fds(self) -> None:
        for fd in self.child_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_fds.clear()

    def _make_pipes(self) -> list[tuple[int, int]]:
        """Make the three pipes, write what stdin the pipe takes, register the parent ends;
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
        self._write_stdin()
        self._register(self.out_r, _IN)
        self._register(self.err_r, _IN)
        dups = [(fd, target) for target, fd in enumerate(self.child_fds)]
        if self.held is not None:  # last: its dup2 may replace a pipe end the child had at 3
            dups.append((self.held, 3))
        return dups

    def _register(self, fd: int, events: int) -> None:
        assert self._epoll is not None
        self._epoll.register(fd, events)
        self._armed.add(fd)
        self._owner[fd] = self

    def _rearm(self, fd: int, events: int) -> None:
        assert self._epoll is not None
        self._epoll.modify(fd, events)
        self._armed.add(fd)

    def _close(self, fd: int) -> None:
        """Close one of the run's descriptors. One still armed is taken out of the epoll
        instance first: a copy of it that a concurrent fork holds for a moment must not report
        events under a number that another run may be given next."""
        if fd in self._armed:
            self._armed.discard(fd)
            assert self._epoll is not None
            self._epoll.unregister(fd)
        self._owner.pop(fd, None)
        os.close(fd)

    def _write_stdin(self) -> None:
        try:
            while self.stdin:
                self.stdin = self.stdin[os.write(self.stdin_w, self.stdin) :]
        except BlockingIOError:  # the pipe is full: the rest goes as the plugin reads
            if self.stdin_w in self._owner:
                self._rearm(self.stdin_w, _OUT)
            else:
                self._register(self.stdin_w, _OUT)
            return
        except (BrokenPipeError, ConnectionResetError):
            pass  # it exited or closed stdin early
        self._close(self.stdin_w)
        self.stdin_w = -1

    def on_event(self, fd: int, events: int) -> None:
        """An event the epoll instance reported for one of the run's descriptors."""
        self._armed.discard(fd)  # one-shot: reported, so disarmed
        if fd == self.pidfd:
            self._exited = True
        elif fd == self.stdin_w:
            self._write_stdin()
        elif fd in (self.out_r, self.err_r):
            if self._read(fd, events):
                self._rearm(fd, _IN)
            else:
                self._close(fd)
                if fd == self.out_r:
                    self.out_r = -1
                else:
                    self.err_r = -1
                if self.overflow:
                    self._stop = "kill"
                    self.on_stop()
                    return
        self._advance()

    def _read(self, fd: int, events: int) -> bool:
        """Read what ``fd`` has; ``False`` at its end (or once stdout passed ``max_output``).

        A short read has emptied the pipe: if every writer had closed it when it was polled
        (``EPOLLHUP``, as when a plugin has written its output and exited), that is its end.
        """
        for _ in range(_READS_PER_EVENT):
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            if fd == self.out_r:
                self.stdout += chunk
                if len(self.stdout) > self.max_output:
                    self.overflow = True  # the caller kills the group
                    return False
            else:
                self.stderr += chunk
                if len(self.stderr) > _STDERR_TAIL:
                    del self.stderr[: len(self.stderr) - _STDERR_TAIL]
            if len(chunk) < _READ_SIZE:
                return not events & select.EPOLLHUP
        return True

    def on_stop(self) -> None:
        """Act on a stop asked for (by the loop thread, or by a flood)."""
        if self.state != RUNNING:  # over: reaped, and never to be signalled again
            return
        if self._stop_deadline:  # a stop under way; "now" turns a gentle one into a kill
            if self._stop == "kill" and self.pid:
                self._kill_group(time.monotonic())
                self._advance()
            return
        if not self.pid:  # nothing to signal: it is gone, or never started
            self._stop_deadline = time.monotonic()
            self._advance()
            return
        if self._stop == "kill":
            self._kill_group(time.monotonic())
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)  # the zombie pins the PID until we reap
            self._stop_deadline = time.monotonic() + self.kill_grace
        self._advance()

    def on_time(self) -> None:
        """Its deadline came."""
        self.deadline = None
        self._advance()

    def _kill_group(self, now: float) -> None:
        """SIGKILL the plugin's group; the plugin gets ``REAP_LIMIT`` seconds to exit."""
        self._signal_group(signal.SIGKILL)
        self._stop = "kill"
        self._stop_deadline = now + REAP_LIMIT

    def _signal_group(self, signum: int) -> None:
        # Only before reaping, while the zombie keeps the group ID from being recycled; never
        # with no PID: killpg(0) would signal our own group.
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def _advance(self) -> None:
        """Move the run on: finish it, or set when to look at it again."""
        if self.state != RUNNING:
            return
        now = time.monotonic()
        if self._stop_deadline:
            self._advance_stop(now)
            return
        if not self._exited:
            return  # the pidfd wakes the thread
        if self.out_r < 0 and self.err_r < 0:
            self._reap_and_finish()
            return
        # The plugin is gone but something still holds its pipes (a child of it?).
        if self._pipe_deadline is None:
            self._pipe_deadline = now + self.pipe_grace
        if now >= self._pipe_deadline:
            logger.warning(
                "plugin %d exited but its output pipes stay open (a child of the plugin?); "
                "killing its process group",
                self.pid,
            )
            self._signal_group(signal.SIGKILL)
            self._reap_and_finish()
        else:
            self.deadline = self._pipe_deadline

    def _advance_stop(self, now: float) -> None:
        if not self.pid:
            self._finish()
            return
        if self._stop == "term" and now < self._stop_deadline:
            # SIGTERM went to the plugin alone: its helpers (an IPAM plugin writing a lease) get
            # until the deadline to finish on their own. Its pidfd says when it exited; a walk
            # of /proc, every 10 ms from then on, whether the rest of its group did.
            if not self._exited:
                self.deadline = self._stop_deadline
                return
            if _group_has_others(self.pid):
                self.deadline = min(self._stop_deadline, now + _GROUP_POLL)
                return
        if self._stop == "term":
            # SIGKILL the whole group even if the plugin itself exited: its children may remain.
            self._kill_group(now)
        if self._exited:
            self._reap_and_finish()
        elif now >= self._stop_deadline:
            logger.error(
                "plugin %d survived SIGKILL for %s s; it is left unreaped", self.pid, REAP_LIMIT
            )
            self.returncode = -signal.SIGKILL
            self._finish()
        else:
            self.deadline = self._stop_deadline

    def _reap_and_finish(self) -> None:
        if self.pid <= 0:  # reaped elsewhere before it could be watched: the status is lost
            self._finish()  # (and waitpid(0) would wait for any child of our group)
            return
        try:
            _, status = os.waitpid(self.pid, 0)  # it has exited: this does not wait
        except ChildProcessError:  # SIGCHLD ignored, or a waitpid(-1) elsewhere
            self.returncode = None
        else:
            self.returncode = os.waitstatus_to_exitcode(status)
        self._finish()

    def fail(self, exc: BaseException) -> None:
        """End a run that something unforeseen broke (in the spawner thread, which must go on
        serving the others): kill and reap the plugin, and hand ``exc`` to the loop thread."""
        logger.error("plugin run of %s failed in the spawner thread", self.path, exc_info=exc)
        if self.state != RUNNING:
            return
        if self.error is None:
            self.error = exc
        if self.pid > 0:
            _kill_and_reap(self.pid)
        self._finish()

    def _finish(self) -> None:
        for fd in (self.stdin_w, self.out_r, self.err_r, self.pidfd):
            if fd >= 0:
                with contextlib.suppress(OSError, ValueError):
                    self._close(fd)
        self.stdin_w = self.out_r = self.err_r = self.pidfd = -1
        self.deadline = None
        with self.lock:
            self.state = FINISHED
            if self.abandoned:
                os.close(self.done)
            else:
                os.eventfd_write(self.done, 1)


def _guarded(spawn: Spawn, step: Callable[..., None], *args: object) -> None:
    """Run one step of ``spawn`` in the spawner thread; a failure ends that run, not the
    thread."""
    try:
        step(*args)
    except Exception as exc:  # noqa: BLE001 - the thread must go on serving the other runs
        spawn.fail(exc)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL the group of a plugin that cannot be watched, and reap it (blocking, briefly)."""
    try:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


class _Runner:
    """The spawner thread, started on first use, and what the loop thread hands it.

    Its eventfd and epoll instance are made at once (at import), so that the first plugin run
    of a process opens no descriptor it keeps; a forked child makes its own.
    """

    def __init__(self) -> None:
        self._make()
        os.register_at_fork(after_in_child=self._forget)

    def _make(self) -> None:
        self._start_lock = threading.Lock()
        self._started = False
        self._requests: collections.deque[Spawn] = collections.deque()
        self._stops: collections.deque[Spawn] = collections.deque()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll = select.epoll()
        self._epoll.register(self._wake, select.EPOLLIN)

    def _forget(self) -> None:
        # A forked child has no spawner thread, and must not share the parent's epoll
        # instance: it closes its copies and starts its own thread on first use.
        os.close(self._wake)
        self._epoll.close()
        self._make()

    def submit(self, spawn: Spawn) -> None:
        self._requests.append(spawn)
        self._poke()

    def poke(self, spawn: Spawn) -> None:
        self._stops.append(spawn)
        self._poke()

    def _poke(self) -> None:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    threading.Thread(
                        target=self._serve,
                        args=(self._epoll, self._wake, self._requests, self._stops),
                        name="cni_async-spawner",
                        daemon=True,
                    ).start()
                    self._started = True
        os.eventfd_write(self._wake, 1)

    @staticmethod
    def _serve(
        epoll: select.epoll,
        wake: int,
        requests: collections.deque[Spawn],
        stops: collections.deque[Spawn],
    ) -> None:
        owner: dict[int, Spawn] = {}
        timers: list[tuple[float, int, Spawn]] = []
        order = itertools.count()
        while True:
            timeout = -1.0
            while timers and (timers[0][2].deadline != timers[0][0]):
                heapq.heappop(timers)  # a run that moved on since
            if timers:
                timeout = max(timers[0][0] - time.monotonic(), 0.0)
            touched: list[Spawn] = []
            woken = False
            for fd, events in epoll.poll(timeout):
                if fd == wake:
                    woken = True
                elif (spawn := owner.get(fd)) is not None:
                    _guarded(spawn, spawn.on_event, fd, events)
                    touched.append(spawn)
            if woken:
                # After the batch's other events: a descriptor closed while handling those
                # may have been reported in this batch too, and its number must not belong
                # to a run started since.
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(wake)
                while stops:
                    spawn = stops.popleft()
                    _guarded(spawn, spawn.on_stop)
                    touched.append(spawn)
                while requests:
                    spawn = requests.popleft()
                    _guarded(spawn, spawn.start, epoll, owner)
                    touched.append(spawn)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, spawn = heapq.heappop(timers)
                if spawn.deadline is not None and spawn.deadline <= now:
                    _guarded(spawn, spawn.on_time)
                    touched.append(spawn)
            for spawn in touched:
                if spawn.deadline is not None and spawn.state == RUNNING:
                    heapq.heappush(timers, (spawn.deadline, next(order), spawn))


_runner: Final = _Runner()
