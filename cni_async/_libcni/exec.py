"""Running plugin binaries: lookup, the CNI environment, and the process itself.

The default executor hands each plugin to the spawner thread (``_libcni.spawner``), which makes
its pipes, writes its stdin and starts it with ``posix_spawn`` in a session of its own; the event
loop drains stdout and stderr without blocking (and writes what stdin the pipe could not take)
and waits for the exit through a pidfd. Every wait goes through ``anyio.wait_readable()``, so it
works on asyncio and on trio. This path costs the loop a fraction of ``anyio.open_process`` per
exec (see ``docs/differences.md``) and keeps the same guarantees:

* cancellation (or the executor's own ``timeout``) sends SIGTERM to the plugin, gives the rest of
  its process group (an IPAM helper finishing a lease) up to ``kill_grace`` seconds to exit, then
  SIGKILLs the group; the plugin is always reaped and every pipe closed before the cancellation
  propagates;
* stdout is capped (a flood is a [`ProtocolError`][cni_async.ProtocolError]), stderr keeps its tail;
* a grandchild that keeps the output pipes open after the plugin exits cannot hang the call: after
  ``pipe_grace`` seconds the group is killed;
* "text file busy" on exec (a binary still being written) is retried up to five times, one second
  apart, and the wait is cancellable;
* a run cancelled while its plugin waits in the spawner's queue never starts it; one cancelled
  while the spawn is under way waits for the spawn (well under a millisecond), then stops it.

The group is always signalled before the plugin is reaped, while its zombie still pins the process
group ID, so a recycled PID can never receive our signal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Final, Protocol

import anyio
import msgspec

from .._errors import (
    PluginError,
    PluginExecFailed,
    PluginNotFound,
    PluginTimeout,
    ProtocolError,
)
from .._json import decode_like_go
from . import spawner

__all__ = ["PluginExecutor", "SpawnExecutor", "cni_env", "find_plugin", "held_lock"]

held_lock: ContextVar[int | None] = ContextVar("cni_async_held_lock", default=None)
"""A descriptor that every plugin [`SpawnExecutor`][cni_async.libcni.SpawnExecutor] starts in this
context inherits (as its descriptor 3): a set-up's intent lock, which its plugins keep held
if the runtime dies before they end. Plugins ignore descriptors they were not told about."""

logger = logging.getLogger("cni_async.exec")

_ETXTBSY_RETRIES: Final = 5
_ETXTBSY_DELAY: Final = 1.0
_STDERR_TAIL: Final = 16 * 1024
_READ_SIZE: Final = 65536
_READS_PER_WAKEUP: Final = 16
_SETTLE_POLL: Final = 0.0005  # a spawn under way ends well within a millisecond
_REAP_LIMIT: Final = 10.0  # a SIGKILLed process only outlives this in uninterruptible sleep
# exec errors that say the file is not a runnable program (others: out of descriptors, memory...)
_NOT_EXECUTABLE: Final = frozenset(
    (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ETXTBSY, errno.EISDIR, errno.ELOOP)
)
_DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PluginExecutor(Protocol):
    """How the engine finds and runs plugin binaries; swap it to test without real processes."""

    def find_plugin(self, plugin_type: str, bin_dirs: Sequence[str]) -> str:
        """Return the path of the plugin binary for ``plugin_type``.

        :raises PluginNotFound: if no directory holds it
        """
        ...

    async def exec_plugin(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> bytes:
        """Run the binary at ``path`` with ``stdin`` and ``env``; return its stdout on success.

        :raises PluginError: if the plugin failed (with its CNI error, if it printed one)
        :raises PluginExecFailed: if the binary could not be executed
        :raises ProtocolError: if the plugin's output exceeded the cap
        :raises PluginTimeout: if the executor has a timeout and the plugin exceeded it
        """
        ...


def find_plugin(plugin_type: str, bin_dirs: Sequence[str]) -> str:
    """Find the binary for ``plugin_type`` in ``bin_dirs``, in order, as libcni does.

    A candidate is accepted if it exists as a regular file (following symlinks); the executable
    bit is not checked here (a non-executable file fails at exec time with a clear error).

    :raises PluginNotFound: if ``plugin_type`` is empty, contains ``/`` or a NUL byte, or is in
        no directory
    """
    if not plugin_type:
        raise PluginNotFound("no plugin name provided", search_path=bin_dirs)
    if "/" in plugin_type or "\0" in plugin_type or plugin_type in (".", ".."):
        raise PluginNotFound(
            f"invalid plugin name {plugin_type!r}: a plugin type must be a bare file name",
            plugin=plugin_type,
            search_path=bin_dirs,
        )
    if not bin_dirs:
        raise PluginNotFound("no plugin directories configured", plugin=plugin_type)
    for directory in bin_dirs:
        candidate = os.path.normpath(os.path.join(directory, plugin_type))
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    raise PluginNotFound(
        f"failed to find plugin {plugin_type!r} in path [{' '.join(bin_dirs)}]; "
        "install the plugin binary in one of these directories",
        plugin=plugin_type,
        search_path=bin_dirs,
    )


def cni_env(
    command: str,
    *,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    args: Sequence[tuple[str, str]] = (),
    bin_dirs: Sequence[str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build a plugin's environment: ``base`` plus the six ``CNI_*`` variables (which win).

    ``base`` defaults to ``{"PATH": <this process's PATH>}``; unlike libcni the runtime's whole
    environment is never passed on.
    """
    env = dict(base) if base is not None else {"PATH": os.environ.get("PATH", _DEFAULT_PATH)}
    env["CNI_COMMAND"] = command
    env["CNI_CONTAINERID"] = container_id
    env["CNI_NETNS"] = netns
    env["CNI_IFNAME"] = ifname
    env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in args)
    env["CNI_PATH"] = ":".join(bin_dirs)
    return env


class _ErrorObject(msgspec.Struct):
    code: int = 0
    msg: str = ""
    details: str = ""


_error_decoder: Final = msgspec.json.Decoder(_ErrorObject)


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


def plugin_failure(stdout: bytes, stderr: bytes, returncode: int) -> PluginError:
    """Turn a failed plugin run into the [`PluginError`][cni_async.PluginError] it stands for
    (libcni's rules)."""
    status = _describe_status(returncode)
    if not stdout:
        if stderr:
            text = stderr.decode("utf-8", "replace").strip()
            msg = f"netplugin failed: {text!r}: {status}"
        else:
            msg = f"netplugin failed with no error message: {status}"
        return PluginError(msg, stderr=stderr, returncode=returncode)
    try:
        obj = decode_like_go(_error_decoder, stdout)
    except msgspec.DecodeError as exc:
        shown = stdout[:512].decode("utf-8", "replace")
        return PluginError(
            f"netplugin failed ({status}) but its error message could not be parsed "
            f"({exc}): {shown!r}",
            stderr=stderr,
            returncode=returncode,
        )
    obj.code = max(obj.code, 0)
    cls = PluginError.for_code(obj.code)
    return cls(
        obj.msg or f"netplugin failed with no error message: {status}",
        code=obj.code,
        details=obj.details,
        stderr=stderr,
        returncode=returncode,
    )


def _exec_failure(path: str, cause: OSError | ValueError) -> PluginExecFailed:
    """What a plugin that could not be started raises: ``cause`` as a PluginExecFailed."""
    if isinstance(cause, ValueError):  # a NUL byte, or an "=" in a variable's name
        return PluginExecFailed(
            f"could not execute {path}: {cause} (a NUL byte, or an '=' in a variable's name, "
            "cannot be passed to a process)",
            errno=errno.EINVAL,
            path=path,
        )
    hint = (
        "; check that it is an executable for this machine"
        if cause.errno in _NOT_EXECUTABLE
        else ""
    )
    return PluginExecFailed(
        f"could not execute {path}: {os.strerror(cause.errno or 0)}{hint}",
        errno=cause.errno or 0,
        path=path,
    )


class SpawnExecutor:
    """The default [`PluginExecutor`][cni_async.libcni.PluginExecutor]: each plugin in a session of its
    own.

    :param max_output: the most stdout bytes accepted from a plugin; more is a ProtocolError
    :param kill_grace: seconds between SIGTERM and SIGKILL when a plugin must be stopped
    :param pipe_grace: seconds to wait for the output pipes to close after the plugin exited
    :param timeout: an optional limit on each plugin run, in seconds (raises PluginTimeout)
    :param stderr_sink: called with the plugin's path and what it wrote to stderr (the last
        16 KiB) after every run that wrote some and exited, successful or not (a command line
        shows it, as cnitool does by letting plugins inherit its stderr)
    """

    def __init__(
        self,
        *,
        max_output: int = 4 * 1024 * 1024,
        kill_grace: float = 0.5,
        pipe_grace: float = 1.0,
        timeout: float | None = None,
        stderr_sink: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.max_output = max_output
        self.kill_grace = kill_grace
        self.pipe_grace = pipe_grace
        self.timeout = timeout
        self.stderr_sink = stderr_sink

    def find_plugin(self, plugin_type: str, bin_dirs: Sequence[str]) -> str:
        return find_plugin(plugin_type, bin_dirs)

    async def exec_plugin(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> bytes:
        if self.timeout is None:
            return await self._exec_with_retry(path, stdin, env)
        with anyio.move_on_after(self.timeout) as scope:
            return await self._exec_with_retry(path, stdin, env)
        assert scope.cancelled_caught
        raise PluginTimeout(f"plugin {path} did not finish within {self.timeout} s; it was stopped")

    async def _exec_with_retry(self, path: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
        attempt = 0
        while True:
            # A task cancelled already must not start a plugin only to stop it at once.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                stdout, stderr, returncode = await _PluginRun(path, stdin, env, self).wait()
            except _NotStarted as failed:
                cause = failed.__cause__
                if (
                    isinstance(cause, OSError)
                    and cause.errno == errno.ETXTBSY
                    and attempt < _ETXTBSY_RETRIES
                ):
                    attempt += 1
                    logger.debug("%s is busy (being written?); retry %d", path, attempt)
                    await anyio.sleep(_ETXTBSY_DELAY)
                    continue
                if isinstance(cause, OSError | ValueError):
                    raise _exec_failure(path, cause) from cause
                assert cause is not None  # _NotStarted is always raised from its reason
                raise cause from None  # MemoryError and the like: not the plugin's doing
            if stderr and self.stderr_sink is not None:
                try:
                    self.stderr_sink(path, stderr)
                except Exception:  # the run's outcome must not depend on where stderr goes
                    logger.exception("the stderr sink failed for %s", path)
            if returncode is None:
                raise PluginError(
                    f"the exit status of {path} was lost: something else in this process reaped "
                    "it (SIGCHLD set to SIG_IGN, or a waitpid(-1) elsewhere); leave SIGCHLD at "
                    "its default so that cni_async reaps its own plugins",
                    stderr=stderr,
                )
            if returncode != 0:
                raise plugin_failure(stdout, stderr, returncode)
            if stderr:
                logger.debug("plugin %s wrote to stderr: %r", path, stderr[-1024:])
            return stdout


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


class _NotStarted(Exception):
    """The plugin could not be started; ``__cause__`` says why (``OSError`` or ``ValueError``)."""


class _PluginRun:
    """One plugin process: the constructor hands it to the spawner thread, ``wait()`` collects
    it. The spawner thread makes the pipes and starts the plugin (``_libcni.spawner``); the loop
    thread owns the epoll instance and, once the spawn is settled, the pipes' parent ends and
    the pidfd."""

    def __init__(
        self, path: str, stdin: bytes, env: Mapping[str, str], executor: SpawnExecutor
    ) -> None:
        self._executor = executor
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._overflow = False
        self._reaped = False
        self._spawn: spawner.Spawn | None = None
        try:
            self._poller = select.epoll(4)
        except OSError as exc:  # out of descriptors, say
            raise _NotStarted from exc
        try:
            # A copy of env: the spawner thread reads it while the caller's tasks go on.
            self._spawn = spawner.Spawn(path, dict(env), stdin, held_lock.get(), self._poller)
            spawner.submit(self._spawn)
        except BaseException:
            if self._spawn is not None:  # interrupted once made (^C on trio): withdraw it, or
                self._kill_now()  # stop what it started
            self._close_all()
            raise

    @property
    def pid(self) -> int:
        """The plugin's PID once started (0 before: never signal it then)."""
        return self._started.pid

    @property
    def _started(self) -> spawner.Spawn:
        assert self._spawn is not None  # set for as long as wait() can run
        return self._spawn

    def _close_stdin(self) -> None:
        # Forget the number too: a later descriptor of this process may be given it.
        spawn = self._started
        self._poller.unregister(spawn.stdin_w)
        os.close(spawn.stdin_w)
        spawn.stdin_w = -1

    def _close_all(self) -> None:
        """Close what the loop thread owns; only once the spawn is settled."""
        spawn = self._spawn
        if spawn is not None:
            for fd in spawn.parent_fds():
                os.close(fd)
            spawn.stdin_w = spawn.out_r = spawn.err_r = -1
            if spawn.pidfd >= 0:
                os.close(spawn.pidfd)
                spawn.pidfd = -1
        self._poller.close()

    def _write_stdin(self) -> None:
        """Write on what stdin the spawner thread could not (the pipe was full)."""
        spawn = self._started
        try:
            while spawn.stdin:
                spawn.stdin = spawn.stdin[os.write(spawn.stdin_w, spawn.stdin) :]
        except BlockingIOError:
            pass

    def _read(self, fd: int, events: int) -> bool:
        """Read what ``fd`` has; ``False`` at end of file. Caps stdout, keeps stderr's tail.

        Reads on until the pipe is empty (at most ``_READS_PER_WAKEUP`` times, so a flood
        cannot hold the event loop). A short read has emptied the pipe: if every writer had
        closed it when it was polled (``EPOLLHUP`` in ``events``, as it is when a plugin has
        written its output and exited), that is its end, seen without another read; if not,
        the next write wakes the loop again.
        """
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            if fd == self._started.out_r:
                self._stdout += chunk
                if len(self._stdout) > self._executor.max_output:
                    self._overflow = True  # wait() kills the group (the spawn may still be ending)
                    return False
            else:
                self._stderr += chunk
                if len(self._stderr) > _STDERR_TAIL:
                    del self._stderr[: len(self._stderr) - _STDERR_TAIL]
            if len(chunk) < _READ_SIZE:
                return not events & select.EPOLLHUP
        return True

    def _signal_group(self, signum: int) -> None:
        # Only before reaping: the zombie keeps the group ID from being recycled. Never with
        # no PID: killpg(0) would signal our own group.
        if not self._reaped and self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def _reap(self) -> int | None:
        """Reap the plugin; its exit code, or ``None`` if something else reaped it first."""
        self._reaped = True
        if self.pid <= 0:  # reaped elsewhere before it could be watched (see the spawner)
            return None
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # SIGCHLD ignored, or a waitpid(-1) elsewhere
            return None
        return os.waitstatus_to_exitcode(status)

    async def _settle(self) -> None:
        """Wait until the spawner thread has started the plugin or will never start it."""
        while not self._started.settle():
            await anyio.sleep(_SETTLE_POLL)

    async def wait(self) -> tuple[bytes, bytes, int | None]:
        """Wait for the plugin and its output; stop and reap it if this task is cancelled.

        One task watches stdout, stderr, stdin (while there is more to write) and the pidfd
        through a private epoll instance, so a run costs no extra task or task group.

        :raises _NotStarted: if the spawner thread could not start it
        """
        try:
            returncode: int | None
            if await self._pump_until_done():
                returncode = self._reap()
            else:  # flooded stdout: kill the group, let the kill land, reap
                await self._settle()
                if self._started.error is not None:  # it wrote, then could not be watched
                    raise _NotStarted from self._started.error
                self._signal_group(signal.SIGKILL)
                returncode = -signal.SIGKILL
                if self._started.pidfd >= 0:
                    with anyio.move_on_after(_REAP_LIMIT):
                        await anyio.wait_readable(self._started.pidfd)
                        returncode = self._reap()
                    if not self._reaped:
                        self._unreaped()
        except _NotStarted:
            raise  # the spawn is done and there is no process
        except BaseException:
            try:
                with anyio.CancelScope(shield=True):
                    await self._terminate()
            except BaseException:
                # Only a native asyncio cancellation gets through the shield (a second
                # Task.cancel(), as asyncio.wait_for can send): stop and reap the plugin here,
                # blocking, rather than leave it running.
                self._kill_now()
                raise
            raise
        finally:
            self._close_all()
        if self._overflow:
            raise ProtocolError(
                f"plugin output exceeds {self._executor.max_output} bytes; the plugin was killed"
            )
        return bytes(self._stdout), bytes(self._stderr), returncode

    async def _pump_until_done(self) -> bool:
        """Serve the pipes until the plugin exited and they closed; ``False`` if it flooded
        stdout (it is then still running)."""
        poller, spawn = self._poller, self._started
        open_pipes = 2  # stdout and stderr, once the spawner thread has made them
        exited_at: float | None = None
        while open_pipes or exited_at is None:
            if exited_at is None:
                await anyio.wait_readable(poller.fileno())
            else:
                # The plugin is gone but something still holds its pipes (a child of it?).
                remaining = exited_at + self._executor.pipe_grace - time.monotonic()
                with anyio.move_on_after(max(remaining, 0)) as grace:
                    await anyio.wait_readable(poller.fileno())
                if grace.cancelled_caught:
                    logger.warning(
                        "plugin %d exited but its output pipes stay open (a child of the "
                        "plugin?); killing its process group",
                        self.pid,
                    )
                    self._signal_group(signal.SIGKILL)
                    return True
            for fd, events in poller.poll(0):
                if fd == spawn.out_r or fd == spawn.err_r:
                    # Registered one-shot: re-armed while open, and left disarmed at its end.
                    if self._read(fd, events):
                        poller.modify(fd, spawner.ONCE)
                    else:
                        open_pipes -= 1
                        if self._overflow:
                            return False
                elif fd == spawn.stdin_w:
                    try:
                        self._write_stdin()
                    except (BrokenPipeError, ConnectionResetError):
                        spawn.stdin = memoryview(b"")  # it exited or closed stdin early
                    if not spawn.stdin:
                        self._close_stdin()
                else:  # the pidfd, or READY for a spawn without one: both reported only once
                    if spawn.error is not None:
                        raise _NotStarted from spawn.error
                    exited_at = time.monotonic()
            if (
                not open_pipes
                and exited_at is None
                and spawn.pidfd >= 0
                and spawn.pidfd in dict(poller.poll(0))
            ):
                # The output closed because the plugin is exiting, and by now it usually has:
                # no need for another round through the event loop to see it.
                exited_at = time.monotonic()
        return True

    async def _terminate(self) -> None:
        """Stop the plugin, then its whole process group, and reap it.

        A plugin still in the spawner's queue is dropped; one being spawned is waited for.
        SIGTERM goes to the plugin alone: the helpers it started (an IPAM plugin in the middle
        of writing a lease, typically a Go binary that dies at once on SIGTERM) get up to
        ``kill_grace`` to finish on their own, so none of them dies half-way through a write
        that a later DEL could not undo. Then the whole group gets SIGKILL.
        """
        await self._settle()
        if self._reaped or not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)  # the zombie pins the PID until we reap
        deadline = time.monotonic() + self._executor.kill_grace
        with anyio.move_on_after(self._executor.kill_grace):
            await anyio.wait_readable(self._started.pidfd)
            # A walk of /proc, in a worker thread: on a busy node it takes milliseconds.
            while time.monotonic() < deadline and await anyio.to_thread.run_sync(
                _group_has_others, self.pid
            ):
                await anyio.sleep(0.01)
        # SIGKILL the whole group even if the plugin itself exited: its children may remain.
        self._signal_group(signal.SIGKILL)
        with anyio.move_on_after(_REAP_LIMIT):
            await anyio.wait_readable(self._started.pidfd)
            self._reap()
            return
        self._unreaped()

    def _unreaped(self) -> None:
        logger.error(
            "plugin %d survived SIGKILL for %s s; it is left unreaped", self.pid, _REAP_LIMIT
        )

    def _kill_now(self) -> None:
        """SIGKILL the group and reap the plugin, blocking (at most ``_REAP_LIMIT`` seconds; a
        killed process is gone within a millisecond unless stuck in the kernel)."""
        self._started.settle(block=True)
        if self._reaped or not self.pid:
            return
        self._signal_group(signal.SIGKILL)
        waiter = select.poll()  # not select.select: the pidfd's number may be 1024 or more
        waiter.register(self._started.pidfd, select.POLLIN)
        if waiter.poll(_REAP_LIMIT * 1000):
            self._reap()
        else:
            self._unreaped()
