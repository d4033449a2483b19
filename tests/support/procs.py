"""Process and file-descriptor checks for tests."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
import warnings
from collections.abc import Callable

import pytest

from cni_async._testing import freeing_module


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` has passed; whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    """Poll until ``pid`` is dead (for processes reaped by someone else, e.g. init)."""
    return wait_until(lambda: not alive(pid), timeout)


def open_fds() -> set[int]:
    """The descriptors this process holds, once the freeing thread has closed every one it
    was handed (a removed cache file's goes there, and no call waits for it)."""
    settle_freeing()
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def settle_freeing(timeout: float = 10.0) -> None:
    """Wait until the freeing thread has closed every descriptor handed to it so far.

    It closes them in order: once it has closed the write end of a new pipe, handed to it
    last, it has closed the others, and the read end sees the pipe's end.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        freeing_module.free_later(write_end)
        waiter = select.poll()
        waiter.register(read_end, select.POLLIN)
        if not waiter.poll(timeout * 1000):
            raise AssertionError(f"the freeing thread closed nothing for {timeout} s")
    finally:
        os.close(read_end)


def deleted_files_held(under: object) -> list[str]:
    """What this process holds open, under the directory ``under``, of files that no longer
    have a name."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{under}/") and target.endswith(" (deleted)"):
            held.append(target.removesuffix(" (deleted)"))
    return sorted(held)


def children() -> list[int]:
    """PIDs of this process's children, zombies included."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(name))
    return found


def run_benchmark(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script to its end; past ``timeout`` s, stop it with SIGTERM (it then
    stops its worker and removes what it made) and fail the test."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the benchmark took over {timeout} s\n{stdout}{stderr}")
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def run_forked(child: Callable[[], bool], timeout: float = 20.0) -> int:
    """Run ``child`` in a forked child process; return its exit code: 0 if it returned true,
    1 if it returned false or raised. One still running after ``timeout`` is killed, and the
    test fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = False
        try:
            ok = child()
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + timeout
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if status[0] == 0:  # hung: stop the child this test made
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    return os.waitstatus_to_exitcode(status[1])
