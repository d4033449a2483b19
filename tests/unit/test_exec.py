from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from cni_async import (
    ContainerUnknown,
    PluginError,
    PluginExecFailed,
    PluginNotFound,
    PluginTimeout,
    ProtocolError,
    SpawnExecutor,
    TryAgainLater,
)
from cni_async._testing import cni_env, exec_module, find_plugin, native_module, spawner_module

from ..support.plugins import FakePlugin
from ..support.procs import alive, children, open_fds, run_forked, wait_dead, wait_until

pytestmark = pytest.mark.anyio


# The Python spawner thread, with each way of spawning this machine has (libc's through ctypes,
# and os.posix_spawn, its fallback).
PYTHON_THREADS = [f"python-{name}" for name in sorted(spawner_module.SPAWN_IMPLEMENTATIONS)]
C_THREAD = ["c"] if "c" in exec_module.SPAWNER_THREADS else []
# For the tests that reach inside the Python thread (the C one has no such seams).
python_thread_only = pytest.mark.parametrize("spawner_thread", PYTHON_THREADS, indirect=True)


@pytest.fixture(autouse=True, params=C_THREAD + PYTHON_THREADS)
def spawner_thread(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on each spawner thread: the C one (where it was built) and the
    Python one with each way of spawning."""
    name: str = request.param
    kind, _, spawn = name.partition("-")
    monkeypatch.setattr(exec_module, "spawner_thread", exec_module.SPAWNER_THREADS[kind])
    if spawn:
        monkeypatch.setattr(
            spawner_module, "spawn_process", spawner_module.SPAWN_IMPLEMENTATIONS[spawn]
        )
    return name


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


@pytest.fixture
def fake(bin_dir: Path) -> FakePlugin:
    return FakePlugin(bin_dir, "fake")


def env(command: str = "ADD") -> dict[str, str]:
    return cni_env(command, container_id="c1", netns="/run/netns/x", ifname="eth0")


async def run(fake: FakePlugin, stdin: bytes = b"{}", **kw: Any) -> bytes:
    return await SpawnExecutor(**kw).exec_plugin(str(fake.path), stdin=stdin, env=env())


def test_find_plugin_order_and_errors(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "p").write_text("")
    assert find_plugin("p", [str(a), str(b)]) == str(b / "p")
    (a / "p").write_text("")
    assert find_plugin("p", [str(a), str(b)]) == str(a / "p")
    (a / "dir").mkdir()
    with pytest.raises(PluginNotFound) as info:
        find_plugin("dir", [str(a)])
    assert info.value.search_path == (str(a),)
    assert "failed to find plugin 'dir'" in str(info.value)
    for bad in ("", "../p", "x/p", ".."):
        with pytest.raises(PluginNotFound):
            find_plugin(bad, [str(a)])
    with pytest.raises(PluginNotFound):
        find_plugin("p", [])


def test_cni_env_is_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "x")
    monkeypatch.setenv("CNI_ARGS", "leak=1")
    e = cni_env(
        "DEL",
        container_id="c",
        netns="n",
        ifname="i",
        args=[("A", "1"), ("B", "2")],
        bin_dirs=["/x", "/y"],
    )
    assert e == {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "c",
        "CNI_NETNS": "n",
        "CNI_IFNAME": "i",
        "CNI_ARGS": "A=1;B=2",
        "CNI_PATH": "/x:/y",
    }


async def test_stdout_and_stdin_are_exact(fake: FakePlugin) -> None:
    fake.on("ADD", stdout='{"cniVersion": "1.1.0"}\n')
    stdin = b'{"name":"n","big":' + b"9" * 200_000 + b"}"
    assert await run(fake, stdin) == b'{"cniVersion": "1.1.0"}\n'
    [call] = fake.calls("ADD")
    assert call["stdin"].encode() == stdin
    assert call["env"]["CNI_CONTAINERID"] == "c1"
    assert call["env"]["CNI_NETNS"] == "/run/netns/x"


async def test_large_output_is_read_whole_and_stderr_keeps_its_tail(fake: FakePlugin) -> None:
    stdout = '{"cniVersion": "1.1.0", "pad": "' + "x" * 3_000_000 + '"}'
    stderr = "".join(f"line {i:07d}\n" for i in range(20_000))  # 260 kB: its tail is kept
    fake.on("ADD", stdout=stdout, stderr=stderr)
    sunk: list[bytes] = []
    executor = SpawnExecutor(stderr_sink=lambda _path, data: sunk.append(data))
    assert await executor.exec_plugin(str(fake.path), stdin=b"{}", env=env()) == stdout.encode()
    assert sunk == [stderr.encode()[-16 * 1024 :]]


def test_the_c_spawner_thread_is_there_wherever_it_can_be_built() -> None:
    """The build compiles it wherever a C compiler is found (CI's machines have one), unless
    CNI_ASYNC_SPAWNER=python chose the Python thread; both threads run every test here."""
    chosen = os.environ.get("CNI_ASYNC_SPAWNER") != "python"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert ("c" in exec_module.SPAWNER_THREADS) == bool(chosen and compiler)


def test_a_missing_stale_or_refused_c_library_leaves_the_python_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = native_module.SOURCE
    assert native_module._load(tmp_path / "missing.so", source) is None
    if "c" in exec_module.SPAWNER_THREADS:
        assert native_module._load(native_module.LIBRARY, source) is not None
        edited = tmp_path / "_spawnloop.c"  # the source changed since the library was built
        edited.write_bytes(source.read_bytes() + b"\n")
        assert native_module._load(native_module.LIBRARY, edited) is None
        assert "not built from the _spawnloop.c beside it" in caplog.text
    monkeypatch.setenv("CNI_ASYNC_SPAWNER", "python")
    assert native_module._load(native_module.LIBRARY, source) is None


async def test_output_written_in_pieces_is_read_whole(fake: FakePlugin) -> None:
    """Output that comes in pieces, with pauses, is read to its end: a piece that empties the
    pipe while the plugin still runs is not taken for the end of its output."""
    fake.on(
        "ADD", stderr="starting\n", stdout="", pieces=['{"cniVersion":', ' "1.1.0", ', '"ips": []}']
    )
    stderr: list[bytes] = []
    executor = SpawnExecutor(stderr_sink=lambda _path, data: stderr.append(data))
    stdout = await executor.exec_plugin(str(fake.path), stdin=b"{}", env=env())
    assert stdout == b'{"cniVersion": "1.1.0", "ips": []}'
    assert stderr == [b"starting\n"]


async def test_the_loop_thread_makes_none_of_a_runs_system_calls(
    fake: FakePlugin, monkeypatch: pytest.MonkeyPatch, spawner_thread: str
) -> None:
    """The spawner thread makes a run's pipes, writes its stdin, reads its output and reaps
    it: the event loop's thread only waits for the run's end. (The C thread makes none of
    these calls through Python at all.)"""
    calls: list[tuple[str, str]] = []

    def recorded(name: str) -> Any:
        real = getattr(os, name)

        def call(*args: Any) -> Any:
            calls.append((name, threading.current_thread().name))
            return real(*args)

        return call

    for name in ("pipe2", "write", "read", "waitpid"):
        monkeypatch.setattr(os, name, recorded(name))
    fake.on("ADD", stdout="{}", stderr="note\n")
    assert await run(fake, b'{"name": "n"}') == b"{}"
    monkeypatch.undo()
    spawner = "cni_async-spawner"
    assert [call for call in calls if call[1] != spawner] == []
    if spawner_thread != "c":
        assert calls.count(("pipe2", spawner)) == 3
        for name in ("write", "read", "waitpid"):
            assert (name, spawner) in calls


@pytest.mark.parametrize(
    ("code", "cls"),
    [(3, ContainerUnknown), (11, TryAgainLater), (7, PluginError), (123, PluginError)],
)
async def test_error_object_maps_to_class(fake: FakePlugin, code: int, cls: type) -> None:
    fake.on(
        "ADD", stdout={"cniVersion": "1.1.0", "code": code, "msg": "boom", "details": "d"}, exit=1
    )
    with pytest.raises(PluginError) as info:
        await run(fake)
    err = info.value
    assert type(err) is cls
    assert (err.code, err.msg, err.details, err.returncode) == (code, "boom", "d", 1)
    assert err.message == "boom; d"


async def test_failure_without_output(fake: FakePlugin) -> None:
    fake.on("ADD", stdout="", exit=2)
    with pytest.raises(PluginError) as info:
        await run(fake)
    assert info.value.code == 0
    assert info.value.message == "netplugin failed with no error message: exit status 2"


async def test_failure_with_stderr_only(fake: FakePlugin) -> None:
    fake.on("ADD", stdout="", stderr="some stderr message", exit=1)
    with pytest.raises(PluginError) as info:
        await run(fake)
    assert info.value.message == "netplugin failed: 'some stderr message': exit status 1"
    assert info.value.stderr == b"some stderr message"


async def test_failure_with_garbage(fake: FakePlugin) -> None:
    fake.on("ADD", stdout="not json", exit=1)
    with pytest.raises(PluginError) as info:
        await run(fake)
    assert info.value.code == 0
    assert "could not be parsed" in info.value.message
    assert "not json" in info.value.message


async def test_error_object_with_exit_zero_is_success(fake: FakePlugin) -> None:
    fake.on("ADD", stdout={"code": 7, "msg": "x"})
    assert b'"code": 7' in await run(fake)


async def test_killed_by_signal(fake: FakePlugin) -> None:
    fake.on("ADD", signal=signal.SIGKILL)
    with pytest.raises(PluginError) as info:
        await run(fake)
    assert info.value.returncode == -signal.SIGKILL
    assert "killed by SIGKILL" in info.value.message


async def test_output_flood_is_capped(fake: FakePlugin) -> None:
    fake.on("ADD", flood=5_000_000, sleep=0)
    before = open_fds()
    with pytest.raises(ProtocolError, match="exceeds 100000 bytes"):
        await run(fake, max_output=100_000)
    assert children() == []
    assert open_fds() == before


async def test_grandchild_holding_stdout_cannot_hang_us(fake: FakePlugin) -> None:
    fake.on("ADD", grandchild=60, stdout="{}")
    before = open_fds()
    started = time.monotonic()
    assert await run(fake, pipe_grace=0.3) == b"{}"
    assert time.monotonic() - started < 10
    [call] = fake.calls("ADD")
    assert children() == []
    assert open_fds() == before
    # The grandchild was in the plugin's process group and was killed with it.
    for pid in _group_members(call["pid"]):
        assert wait_dead(pid)


def _group_members(pgid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid:
                    found.append(int(name))
            except ProcessLookupError:
                pass
    return found


@pytest.mark.parametrize("ignore_term", [False, True])
async def test_cancellation_stops_and_reaps(
    fake: FakePlugin, tmp_path: Path, ignore_term: bool
) -> None:
    pidfile = tmp_path / "pids"
    fake.on("ADD", sleep=60, ignore_term=ignore_term, grandchild=60, pidfile=str(pidfile))
    before = open_fds()
    started = time.monotonic()
    with anyio.move_on_after(1.0) as scope:
        await run(fake, kill_grace=0.2)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 5
    [pid] = [int(p) for p in pidfile.read_text().split()]
    assert not alive(pid)
    assert children() == []
    assert open_fds() == before
    assert _group_members(pid) == [] or all(wait_dead(p) for p in _group_members(pid))


@python_thread_only
async def test_cancellation_survives_running_out_of_descriptors(
    fake: FakePlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel path's walk of /proc needs a descriptor; without one the cancellation still
    ends quietly and the plugin and its group are still killed."""
    pidfile = tmp_path / "pids"
    fake.on("ADD", sleep=60, grandchild=60, pidfile=str(pidfile))
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        if path == "/proc":
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    with anyio.move_on_after(0.5) as scope:
        await run(fake, kill_grace=0.2)
    monkeypatch.undo()  # os.listdir is the os module's: the checks below need it
    assert scope.cancelled_caught
    [pid] = [int(p) for p in pidfile.read_text().split()]
    assert not alive(pid)
    assert children() == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_second_native_cancel_still_stops_and_reaps(fake: FakePlugin, tmp_path: Path) -> None:
    """asyncio.Task.cancel() twice (asyncio.wait_for can do it) gets through anyio's shield:
    the plugin, which ignores SIGTERM, must still be killed and reaped, not left running."""
    import asyncio

    pidfile = tmp_path / "pids"
    fake.on("ADD", sleep=60, ignore_term=True, pidfile=str(pidfile))
    before = open_fds()
    task = asyncio.ensure_future(run(fake, kill_grace=5))
    while not pidfile.exists():
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.2)  # now in the kill_grace wait after SIGTERM
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [pid] = [int(p) for p in pidfile.read_text().split()]
    assert not alive(pid)
    assert children() == []
    assert open_fds() == before


async def test_cancelled_task_starts_no_plugin(fake: FakePlugin) -> None:
    before = open_fds()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await run(fake)
    assert open_fds() == before
    assert fake.calls() == []
    await run(fake)
    assert len(fake.calls()) == 1


async def test_nul_bytes_are_exec_failures(fake: FakePlugin, bin_dir: Path) -> None:
    with pytest.raises(PluginNotFound):
        find_plugin("fa\0ke", [str(bin_dir)])
    executor = SpawnExecutor()
    with pytest.raises(PluginExecFailed) as info:
        await executor.exec_plugin(str(fake.path), stdin=b"{}", env={**env(), "X": "a\0b"})
    assert "NUL" in info.value.message
    assert children() == []


async def test_out_of_descriptors_leaks_none(fake: FakePlugin) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    # Room for three more descriptors: the first pipe and half of the second, of the six pipe
    # ends a run needs. Descriptors are numbered from the lowest free one, holes included.
    limit = next(n for n in range(1, soft) if n - len([fd for fd in before if fd < n]) == 3)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        with pytest.raises(PluginExecFailed) as info:
            await run(fake)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "executable" not in info.value.message  # the file is fine; descriptors ran out
    assert open_fds() == before
    assert fake.calls() == []


async def test_exit_status_lost_to_an_ignored_sigchld(fake: FakePlugin) -> None:
    """With SIGCHLD ignored the kernel reaps plugins itself: say so, not "killed by SIGKILL"."""
    fake.on("ADD", stdout="{}")
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with pytest.raises(PluginError, match="SIGCHLD") as info:
            await run(fake)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert "SIGKILL" not in info.value.message
    # The kernel reaps such a child itself, and its /proc entry may outlive the exit that woke
    # the run by a moment (seen once in CI): gone soon, not necessarily at once.
    wait_until(lambda: not children())
    assert children() == []


async def test_cancellation_by_task_group(fake: FakePlugin) -> None:
    fake.on("ADD", sleep=60)

    async def fail_soon() -> None:
        await anyio.sleep(0.5)
        raise RuntimeError("sibling failed")

    with pytest.raises(ExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, fake)
            tg.start_soon(fail_soon)
    assert info.group_contains(RuntimeError)
    assert children() == []


async def test_fail_after_propagates_timeout_error(fake: FakePlugin) -> None:
    fake.on("ADD", sleep=60)
    with pytest.raises(TimeoutError) as info, anyio.fail_after(0.5):
        await run(fake)
    assert not isinstance(info.value, PluginTimeout)
    assert children() == []


async def test_executor_timeout(fake: FakePlugin) -> None:
    fake.on("ADD", sleep=60)
    with pytest.raises(PluginTimeout):
        await run(fake, timeout=0.5)
    assert children() == []


async def test_not_executable(fake: FakePlugin) -> None:
    fake.path.chmod(0o644)
    with pytest.raises(PluginExecFailed) as info:
        await run(fake)
    assert info.value.errno == 13


async def test_text_file_busy_is_retried(fake: FakePlugin) -> None:
    fd = os.open(fake.path, os.O_WRONLY)
    threading.Timer(1.5, os.close, [fd]).start()
    fake.on("ADD", stdout="{}")
    started = time.monotonic()
    assert await run(fake) == b"{}"
    assert time.monotonic() - started >= 1.5
    assert len(fake.calls("ADD")) == 1


async def test_text_file_busy_wait_is_cancellable(fake: FakePlugin) -> None:
    fd = os.open(fake.path, os.O_WRONLY)
    try:
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            await run(fake)
        assert time.monotonic() - started < 1.0
    finally:
        os.close(fd)
    assert fake.calls() == []


async def test_a_failing_stderr_sink_does_not_fail_the_run(fake: FakePlugin) -> None:
    """The run's outcome (a successful ADD, with its side effects) must not depend on where
    its stderr goes: a closed or broken stderr of the caller is logged, not raised."""
    fake.on("ADD", stderr="note from the plugin\n", stdout={"cniVersion": "1.0.0"})

    def broken(path: str, data: bytes) -> None:
        raise BrokenPipeError("stderr is gone")

    out = await run(fake, stderr_sink=broken)
    assert b"1.0.0" in out


def test_libc_spawn_is_found_on_glibc() -> None:
    """On glibc (CI's machines) both ways of spawning exist, so the tests above run both."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the libc spawn is only required on glibc")
    assert list(spawner_module.SPAWN_IMPLEMENTATIONS) == ["libc", "os"]


def _gated_spawn(gate: threading.Event, spawned: list[str]) -> Any:
    """A spawn function that waits for ``gate`` before starting the process."""
    spawn = spawner_module.spawn_process

    def gated(path: str, *args: Any) -> int:
        gate.wait(10)
        spawned.append(path)
        pid: int = spawn(path, *args)
        return pid

    return gated


async def _max_gap(ticks: list[float], done: anyio.Event) -> None:
    """Tick every 10 ms until ``done``: the longest gap shows whether the loop was blocked."""
    while not done.is_set():
        ticks.append(time.monotonic())
        await anyio.sleep(0.01)


@python_thread_only
async def test_cancelled_while_queued_never_starts(
    fake: FakePlugin, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cancelled while its request waits behind another in the spawner's queue returns
    at once with every descriptor it opened closed, and its plugin is never started."""
    first = FakePlugin(bin_dir, "first")
    first.on("ADD", stdout="{}")
    fake.on("ADD", stdout="{}")
    gate = threading.Event()
    spawned: list[str] = []
    monkeypatch.setattr(spawner_module, "spawn_process", _gated_spawn(gate, spawned))
    before = open_fds()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(SpawnExecutor().exec_plugin, str(first.path), stdin=b"{}", env=env()))
        await anyio.sleep(0.1)  # the spawner thread now waits at the gate with the first
        with_first = open_fds()
        started = time.monotonic()
        with anyio.move_on_after(0.2) as scope:
            await run(fake)
        assert scope.cancelled_caught
        assert time.monotonic() - started < 1.0
        assert open_fds() == with_first  # the cancelled run's pipes are closed already
        gate.set()
    assert spawned == [str(first.path)]
    assert fake.calls() == []
    assert children() == []
    assert open_fds() == before


@python_thread_only
async def test_cancelled_while_spawning_is_killed_and_reaped(
    fake: FakePlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cancelled while the spawner thread is still starting its plugin waits for the
    spawn to end without blocking the event loop, then stops the plugin and reaps it."""
    pidfile = tmp_path / "pids"
    fake.on("ADD", sleep=60, pidfile=str(pidfile))
    gate = threading.Event()
    spawn = spawner_module.spawn_process

    def slow_spawn(path: str, *args: Any) -> int:
        pid: int = spawn(path, *args)
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the plugin runs for sure before the spawn ends
        gate.wait(10)
        return pid

    monkeypatch.setattr(spawner_module, "spawn_process", slow_spawn)
    threading.Timer(0.5, gate.set).start()
    before = open_fds()
    ticks: list[float] = []
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_max_gap, ticks, done)
        with anyio.move_on_after(0.1) as scope:
            await run(fake, kill_grace=0.2)
        done.set()
    assert scope.cancelled_caught
    assert gate.is_set()  # the cancellation waited for the spawn
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.25  # and the loop ran meanwhile
    [pid] = [int(p) for p in pidfile.read_text().split()]
    assert not alive(pid)
    assert children() == []
    assert open_fds() == before


def _no_pidfd_once(written: Path) -> Any:
    """A pidfd_open that fails with EMFILE once ``written`` exists (the plugin wrote it)."""

    def no_pidfd(pid: int, flags: int = 0) -> int:
        deadline = time.monotonic() + 10
        while not written.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    return no_pidfd


@python_thread_only
async def test_no_pidfd_kills_and_reaps_the_plugin(
    fake: FakePlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "pids"
    fake.on("ADD", sleep=60, pidfile=str(pidfile))

    # The plugin runs by then: it must be killed, not left behind.
    monkeypatch.setattr(os, "pidfd_open", _no_pidfd_once(pidfile))
    before = open_fds()
    started = time.monotonic()
    with pytest.raises(PluginExecFailed) as info:
        await run(fake)
    monkeypatch.undo()
    assert time.monotonic() - started < 10  # killed, not waited for (it sleeps 60 s)
    assert info.value.errno == errno.EMFILE
    [pid] = [int(p) for p in pidfile.read_text().split()]
    assert not alive(pid)
    assert children() == []
    assert open_fds() == before


@python_thread_only
async def test_no_pidfd_with_a_daemon_holding_stdout_does_not_hang(
    fake: FakePlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin started a daemon of its own (a session of its own, so the kill of the
    plugin's group misses it) that holds stdout open; the plugin then cannot be watched. The
    run must end with the exec failure at once, not wait for the daemon."""
    daemon_pidfile = tmp_path / "daemon"
    fake.on("ADD", sleep=60, escapee=60, escapee_pidfile=str(daemon_pidfile))

    monkeypatch.setattr(os, "pidfd_open", _no_pidfd_once(daemon_pidfile))
    try:
        started = time.monotonic()
        with anyio.fail_after(10):
            with pytest.raises(PluginExecFailed):
                await run(fake)
        assert time.monotonic() - started < 5
        assert children() == []
    finally:
        monkeypatch.undo()
        daemon = int(daemon_pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)  # ours: the test's plugin started it


@python_thread_only
async def test_flood_while_the_plugin_cannot_be_watched(
    fake: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin floods stdout while its spawn is still ending, and the spawn then fails:
    the exec failure is raised (not an error of ours about a missing descriptor)."""
    fake.on("ADD", flood=1_000_000)  # blocks writing once the pipe is full

    def late_failure(pid: int, flags: int = 0) -> int:
        time.sleep(0.5)  # the loop reads past max_output meanwhile
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", late_failure)
    with pytest.raises(PluginExecFailed) as info:
        await run(fake, max_output=1000)
    monkeypatch.undo()
    assert info.value.errno == errno.EMFILE
    assert children() == []


@python_thread_only
async def test_a_plugin_reaped_before_it_is_watched_has_its_status_lost(
    fake: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SIGCHLD ignored, a plugin can be gone and reaped by the kernel before its pidfd is
    opened: the run says the exit status was lost, and never waits by its (free) PID, nor for
    another child of this process (a sibling that runs on here)."""
    fake.on("ADD", stdout="{}")
    real_pidfd_open = os.pidfd_open

    def after_exit(pid: int, flags: int = 0) -> int:
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        return real_pidfd_open(pid, flags)

    monkeypatch.setattr(os, "pidfd_open", after_exit)
    before = open_fds()
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sibling = os.posix_spawn("/bin/sleep", ["sleep", "30"], {})
    try:
        started = time.monotonic()
        with pytest.raises(PluginError, match="SIGCHLD"):
            await run(fake)
        assert time.monotonic() - started < 10
    finally:
        os.kill(sibling, signal.SIGKILL)  # ours, by its PID
        with contextlib.suppress(ChildProcessError):  # the kernel reaps it: SIGCHLD is ignored
            os.waitpid(sibling, 0)
        signal.signal(signal.SIGCHLD, previous)
        monkeypatch.undo()
    assert children() == []
    assert open_fds() == before


@python_thread_only
async def test_a_run_broken_in_the_spawner_thread_fails_alone(
    fake: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something unforeseen in the spawner thread (here a read that fails with EIO) ends that
    run, with its plugin reaped and nothing left open; the thread goes on serving the next."""
    fake.on("ADD", stdout="{}")
    real_read = os.read

    def broken_read(fd: int, size: int) -> bytes:
        if threading.current_thread().name == "cni_async-spawner":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(fd, size)

    before = open_fds()
    monkeypatch.setattr(os, "read", broken_read)
    with pytest.raises(PluginExecFailed) as info:
        await run(fake)
    monkeypatch.undo()
    assert info.value.errno == errno.EIO
    assert children() == []
    assert open_fds() == before
    assert await run(fake) == b"{}"


def test_a_forked_child_starts_its_own_spawner(fake: FakePlugin) -> None:
    """The spawner thread does not survive fork(); a forked child that runs plugins gets one."""
    fake.on("ADD", stdout="{}")
    assert anyio.run(run, fake) == b"{}"  # the parent's spawner thread runs
    assert run_forked(lambda: anyio.run(run, fake) == b"{}") == 0
    assert len(fake.calls("ADD")) == 2
