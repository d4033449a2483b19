"""Running plugin binaries: lookup, the CNI environment, and the process itself.

The default executor hands each plugin to the spawner thread, which runs it from its spawn
(``posix_spawn``, in a session of its own) to its reap, with its pipes served from an epoll
instance of the thread's own: in C (``_libcni.native``), where the package's build compiled it,
else in Python (``_libcni.spawner``); the event loop waits for one eventfd per plugin run,
through ``anyio.wait_readable()``, so it works on asyncio and on trio. This path costs the loop a
fraction of ``anyio.open_process`` per exec (see ``docs/differences.md``) and keeps the same
guarantees:

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

import errno
import logging
import os
import select
import signal
import stat
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
from . import native, spawner

__all__ = ["PluginExecutor", "SpawnExecutor", "cni_env", "find_plugin", "held_lock"]

held_lock: ContextVar[int | None] = ContextVar("cni_async_held_lock", default=None)
"""A descriptor that every plugin [`SpawnExecutor`][cni_async.libcni.SpawnExecutor] starts in this
context inherits (as its descriptor 3): a set-up's intent lock, which its plugins keep held
if the runtime dies before they end. Plugins ignore descriptors they were not told about."""

logger = logging.getLogger("cni_async.exec")

_ETXTBSY_RETRIES: Final = 5
_ETXTBSY_DELAY: Final = 1.0
_SETTLE_POLL: Final = 0.0005  # a spawn under way ends well within a millisecond
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

    Plugins run in one spawner thread per process: a C one where the package's build compiled
    it (it never takes the GIL), else a Python one. ``CNI_ASYNC_SPAWNER=python`` in the
    environment when cni_async is imported chooses the Python one.

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


class _Run(Protocol):
    """The loop thread's side of a run in a spawner thread (C or Python)."""

    done: int
    state: int

    def submit(self) -> None: ...
    def withdraw(self) -> bool: ...
    def request_stop(self, *, now: bool = False) -> None: ...
    def abandon(self) -> None: ...
    def close(self) -> None: ...
    def outcome(self) -> spawner.Outcome: ...


class _RunFactory(Protocol):
    def __call__(
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
    ) -> _Run: ...


SPAWNER_THREADS: Final[dict[str, _RunFactory]] = {
    **({"c": native.NativeRun} if native.NativeRun is not None else {}),
    "python": spawner.Spawn,
}
"""The spawner threads this process can use, best first: the C one where it was built
(``_libcni.native``), and Python's."""

spawner_thread: _RunFactory = next(iter(SPAWNER_THREADS.values()))
"""Where plugin runs go (looked up for every run, so that a test can choose)."""


class _NotStarted(Exception):
    """The plugin could not be started (or its run broke in the spawner thread, its plugin
    reaped); ``__cause__`` says why (an ``OSError`` or ``ValueError`` as a rule)."""


class _PluginRun:
    """One plugin run: the constructor hands it to the spawner thread, which runs it from its
    spawn to its reap (the C thread of ``_libcni.native`` where it was built, else the Python
    one of ``_libcni.spawner``); ``wait()`` waits for its end. The loop thread owns the ``done``
    eventfd only."""

    def __init__(
        self, path: str, stdin: bytes, env: Mapping[str, str], executor: SpawnExecutor
    ) -> None:
        self._executor = executor
        try:
            done = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError as exc:  # out of descriptors, say
            raise _NotStarted from exc
        try:
            # A copy of env: the Python spawner thread reads it while the caller's tasks go on.
            self._spawn = spawner_thread(
                path,
                dict(env),
                stdin,
                held=held_lock.get(),
                done=done,
                max_output=executor.max_output,
                kill_grace=executor.kill_grace,
                pipe_grace=executor.pipe_grace,
            )
        except (ValueError, MemoryError) as exc:  # a NUL byte, say (the C thread's checks)
            os.close(done)
            raise _NotStarted from exc
        except BaseException:
            os.close(done)
            raise
        try:
            self._spawn.submit()
        except OSError as exc:  # the C thread could not be started
            self._stop_now()
            raise _NotStarted from exc
        except BaseException:  # interrupted (^C on trio): withdraw it, or stop what it started
            self._stop_now()
            raise

    async def wait(self) -> tuple[bytes, bytes, int | None]:
        """Wait for the plugin's end; stop it (and wait for that) if this task is cancelled.

        :raises _NotStarted: if the spawner thread could not start it
        """
        spawn = self._spawn
        try:
            await anyio.wait_readable(spawn.done)
        except BaseException:
            try:
                with anyio.CancelScope(shield=True):
                    await self._stop()
            except BaseException:
                # Only a native asyncio cancellation gets through the shield (a second
                # Task.cancel(), as asyncio.wait_for can send): kill the plugin and wait for
                # its reap here, blocking, rather than leave it running.
                self._stop_now()
                raise
            spawn.close()
            raise
        try:
            outcome = spawn.outcome()
        finally:
            spawn.close()
        if outcome.error is not None:
            raise _NotStarted from outcome.error
        if outcome.overflow:
            raise ProtocolError(
                f"plugin output exceeds {self._executor.max_output} bytes; the plugin was killed"
            )
        return outcome.stdout, outcome.stderr, outcome.returncode

    async def _stop(self) -> None:
        """Withdraw the run, or have the spawner thread stop the plugin; wait for its end."""
        spawn = self._spawn
        while not spawn.withdraw():  # its spawn is under way: it ends well within a millisecond
            await anyio.sleep(_SETTLE_POLL)
        if spawn.state != spawner.WITHDRAWN:
            spawn.request_stop()
            await anyio.wait_readable(spawn.done)

    def _stop_now(self) -> None:
        """Kill the plugin's group and wait for its reap, blocking (at most
        ``spawner.REAP_LIMIT`` seconds and a little more; a killed process is gone within a
        millisecond unless stuck in the kernel); past that, ``done`` is left to the spawner
        thread."""
        spawn = self._spawn
        if spawn.withdraw() and spawn.state == spawner.WITHDRAWN:
            spawn.close()
            return
        spawn.request_stop(now=True)
        waiter = select.poll()  # not select.select: the eventfd's number may be 1024 or more
        waiter.register(spawn.done, select.POLLIN)
        if waiter.poll((spawner.REAP_LIMIT + 1) * 1000):
            spawn.close()
        else:
            spawn.abandon()
