"""Where should a plugin's ``posix_spawn`` run? A measurement for the hot path (not a benchmark
of the library): the event loop's CPU per exec and its lag, with the spawn made in the loop
thread (as the library does today), in anyio's worker threads, or in one spawner thread fed by a
queue; each with ``os.posix_spawn`` or with libc's ``posix_spawn`` called through ``ctypes``
(which releases the GIL while the kernel clones and the child execs).

    .venv/bin/python benchmarks/spawn_offload.py [--execs N] [--concurrency C] [--rounds R]

Every exec runs the no-op plugin of configuration B (built from ``noop.c`` into a temporary
directory) in a new session, stdin pre-written into a pipe, stdout and stderr on one pipe; the
loop waits for the child through a pidfd, or, with the spawner thread, for the end of its
output. A heartbeat task sleeps 2 ms over and over and records how late it wakes. Runs on
asyncio; needs gcc. Results are on the benchmarks page ("The hot path").
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import queue
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread

POSIX_SPAWN_SETSID = 0x80  # glibc's flag: the child in a session of its own
STDIN = b'{"cniVersion":"1.0.0","name":"n","type":"noop"}'
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

Spawn = Callable[[str, int, int], int]


def spawn_os(path: str, stdin_r: int, out_w: int) -> int:
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin_r, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, out_w, 2),
    ]
    return os.posix_spawn(path, [path], ENV, file_actions=actions, setsid=True)


def spawn_ctypes(path: str, stdin_r: int, out_w: int) -> int:
    actions = ctypes.create_string_buffer(256)  # larger than glibc's structures
    attr = ctypes.create_string_buffer(512)
    _libc.posix_spawn_file_actions_init(actions)
    _libc.posix_spawnattr_init(attr)
    try:
        _libc.posix_spawnattr_setflags(attr, ctypes.c_short(POSIX_SPAWN_SETSID))
        for fd, target in ((stdin_r, 0), (out_w, 1), (out_w, 2)):
            _libc.posix_spawn_file_actions_adddup2(actions, fd, target)
        argv = (ctypes.c_char_p * 2)(path.encode(), None)
        envp = (ctypes.c_char_p * (len(ENV) + 1))(
            *(f"{k}={v}".encode() for k, v in ENV.items()), None
        )
        pid = ctypes.c_int()
        err = _libc.posix_spawn(ctypes.byref(pid), path.encode(), actions, attr, argv, envp)
        if err:
            raise OSError(err, os.strerror(err))
        return pid.value
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)
        _libc.posix_spawnattr_destroy(attr)


def pipes() -> tuple[int, int, int]:
    """The read end of a pre-written stdin, and both ends of the output pipe."""
    stdin_r, stdin_w = os.pipe()
    os.write(stdin_w, STDIN)
    os.close(stdin_w)
    out_r, out_w = os.pipe()
    os.set_blocking(out_r, False)
    return stdin_r, out_r, out_w


async def drain(fd: int) -> None:
    while True:
        await anyio.wait_readable(fd)
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            pass


async def exec_direct(path: str, spawn: Spawn, in_thread: bool) -> None:
    """Spawn in the loop thread or in anyio's worker threads; wait through a pidfd."""
    stdin_r, out_r, out_w = pipes()
    if in_thread:
        pid = await anyio.to_thread.run_sync(spawn, path, stdin_r, out_w)
    else:
        pid = spawn(path, stdin_r, out_w)
    os.close(out_w)
    os.close(stdin_r)
    pidfd = os.pidfd_open(pid)
    await anyio.wait_readable(pidfd)
    os.waitid(os.P_PIDFD, pidfd, os.WEXITED)  # noqa: ASYNC222 - the pidfd said it exited
    await drain(out_r)
    os.close(out_r)
    os.close(pidfd)


class Spawner:
    """One thread that spawns what the loop puts in its queue, then closes the child's ends."""

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._queue: queue.SimpleQueue[tuple[str, int, int, list[int]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (request := self._queue.get()) is not None:
            path, stdin_r, out_w, pid = request
            try:
                pid.append(self._spawn(path, stdin_r, out_w))
            finally:
                os.close(out_w)
                os.close(stdin_r)

    async def exec(self, path: str) -> None:
        stdin_r, out_r, out_w = pipes()
        pid: list[int] = []
        self._queue.put((path, stdin_r, out_w, pid))
        await drain(out_r)  # ends once the child exited and the spawner closed its end
        os.close(out_r)
        os.waitpid(pid[0], 0)  # noqa: ASYNC222 - its output ended: it exits now, if not already

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


async def measure(label: str, one: Callable[[], Awaitable[None]], execs: int, conc: int) -> None:
    lags: list[float] = []
    done = anyio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(0.002)
            lags.append(time.perf_counter() - start - 0.002)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await one()  # warm up
    loop0 = time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    async with anyio.create_task_group() as beat:
        beat.start_soon(heartbeat)
        async with anyio.create_task_group() as pool:
            for _ in range(conc):
                pool.start_soon(worker, execs // conc)
        done.set()
    wall = time.perf_counter() - wall0
    loop_cpu = time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID) - loop0
    cpu = time.process_time() - cpu0
    lags.sort()
    print(
        f"| {label} | {execs / wall:.0f} | {loop_cpu / execs * 1e3:.3f} | {cpu / execs * 1e3:.3f} "
        f"| {statistics.median(lags) * 1e3:.2f} / {lags[int(len(lags) * 0.99)] * 1e3:.2f} |"
    )


async def main(args: argparse.Namespace, noop: str) -> None:
    print("| where posix_spawn runs | execs/s | loop CPU ms/exec | process CPU ms/exec | lag ms |")
    print("|---|---:|---:|---:|---|")
    for _ in range(args.rounds):
        for name, spawn in (("os.posix_spawn", spawn_os), ("ctypes", spawn_ctypes)):
            variants: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("loop thread, os.posix_spawn", partial(exec_direct, noop, spawn_os, False)),
                (f"anyio worker thread, {name}", partial(exec_direct, noop, spawn, True)),
            ]
            for label, one in variants:
                await measure(label, one, args.execs, args.concurrency)
            spawner = Spawner(spawn)
            try:
                one = partial(spawner.exec, noop)
                await measure(f"spawner thread, {name}", one, args.execs, args.concurrency)
            finally:
                spawner.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execs", type=int, default=1600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    work = Path(tempfile.mkdtemp(prefix="spawn-offload-"))
    try:
        noop = str(work / "noop")
        source = Path(__file__).with_name("noop.c")
        subprocess.run(["gcc", "-O2", "-static", "-o", noop, str(source)], check=True)
        anyio.run(main, parser.parse_args(), noop)
    finally:
        shutil.rmtree(work, ignore_errors=True)
