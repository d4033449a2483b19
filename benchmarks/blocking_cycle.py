"""What B's pod cycle costs as plain blocking Python in threads, beside cni_async's own with and
without running plugins: a measurement for the hot path (not a benchmark of the library).

    .venv/bin/python benchmarks/blocking_cycle.py [--pods N] [--concurrency C] [--rounds R]

Each round runs the same pods of configuration B (the no-op plugin) three times, each time in a
fresh process, in alternating order: through cni_async (``churn.py``'s own pod cycle: set-up,
status, teardown); through cni_async with every plugin run answered at once, with no process
(``no_exec``: the library's cost apart from running plugins); and as blocking calls in C threads
that make the kernel do what cni_async makes it do for a pod, with the same stdin and
environment (``churn.py``'s floor job):

- set-up: the pod's namespace; an intent record, named, locked and fsync'd with its directory;
  ``lo`` up (the library's own netlink call); the ADD, through ``posix_spawn`` with pipes; the
  cache entry, fsync'd, renamed into place, the directory fsync'd; the record removed;
- status: ``lo``'s flags; the CHECK; the cache entry read;
- teardown: the record looked up; the cache directory listed and the entry read; the DEL; the
  entry removed; the namespace deleted.

The blocking side leaves out what makes the library a library (validation, locks, result types,
cancellation, logging, observers): its difference from cni_async bounds what an event loop,
anyio and those cost per pod, and ``no_exec`` tells how much of that is running plugins. It
prints pods/s and the process's CPU per pod for each side, each round and their medians. Needs
root and gcc; runs in the calling network namespace (B's plugin touches no link, and ``lo``
only in the pods' own namespaces). Results are on the benchmarks page ("An event loop against
blocking threads").
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import churn

from cni_async._testing import loopback_up_blocking, socket_in, spawner_module

_SIOCGIFFLAGS = 0x8913
_IFREQ = struct.Struct("=16sh14x")


def read_job(job: Path) -> list[tuple[str, list[list[tuple[str, bytes, dict[str, str]]]]]]:
    """``churn.floor_job``'s file: per pod, its namespace name and its steps by phase."""
    data = job.read_bytes()
    header, _, rest = data.partition(b"\n")
    pods = []
    for _ in range(int(header.split()[0])):
        line, _, rest = rest.partition(b"\n")
        name, count = line.split()
        phases: list[list[tuple[str, bytes, dict[str, str]]]] = [[], [], []]
        for _ in range(int(count)):
            line, _, rest = rest.partition(b"\n")
            phase, _net, _first, n_path, n_stdin, n_env = map(int, line.split())
            path, stdin = rest[:n_path].decode(), rest[n_path : n_path + n_stdin]
            env_block = rest[n_path + n_stdin : n_path + n_stdin + n_env]
            rest = rest[n_path + n_stdin + n_env :]
            env = dict(e.decode().split("=", 1) for e in env_block.split(b"\0") if e)
            phases[phase].append((path, stdin, env))
        pods.append((name.decode(), phases))
    return pods


def run_blocking(spec: dict[str, Any]) -> dict[str, Any]:
    spawn = next(iter(spawner_module.SPAWN_IMPLEMENTATIONS.values()))
    cache = Path(spec["work"]) / "blocking-cache"
    dirs = {d: cache / d for d in ("intents", "results", "tmp")}
    for d in dirs.values():
        d.mkdir(parents=True)
    dir_fds = {d: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for d, p in dirs.items()}

    def run(path: str, stdin: bytes, env: dict[str, str]) -> bytes:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        os.write(in_w, stdin)
        os.close(in_w)
        pid = spawn(path, env, [(in_r, 0), (out_w, 1), (err_w, 2)])
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        out = b""
        while chunk := os.read(out_r, 65536):
            out += chunk
        while os.read(err_r, 65536):
            pass
        os.close(out_r)
        os.close(err_r)
        if os.waitpid(pid, 0)[1] != 0:
            raise RuntimeError(f"{path} failed")
        return out

    def durable(directory: str, name: str, data: bytes, *, name_first: bool) -> int:
        tmp = dirs["tmp"] / f"{name}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(fd, data)
        if name_first:  # the intent record: named, locked, then fsync'd
            os.link(tmp, dirs[directory] / name)
            os.unlink(tmp)
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.fsync(fd)
        else:
            os.fsync(fd)
            os.rename(tmp, dirs[directory] / name)
        os.fsync(dir_fds[directory])
        return fd

    def pod(name: str, phases: list[list[tuple[str, bytes, dict[str, str]]]]) -> None:
        path = churn.netns_add(name)
        cid = phases[0][0][2]["CNI_CONTAINERID"]
        entry = dirs["results"] / f"bench-b-{cid}-eth0"
        try:
            lock = durable(
                "intents", cid, json.dumps({"attachments": [cid]}).encode(), name_first=True
            )
            with loopback_up_blocking(path) as up:
                up()
            result = b"{}"
            for plugin, stdin, env in phases[0]:
                result = run(plugin, stdin.replace(b"@PREV@", result), env)
            os.close(durable("results", entry.name, result, name_first=False))
            os.unlink(dirs["intents"] / cid)
            os.close(lock)
            with socket_in(path, socket.AF_INET, socket.SOCK_DGRAM, 0) as sock:
                fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
            for plugin, stdin, env in phases[1]:
                run(plugin, stdin.replace(b"@PREV@", result), env)
            entry.read_bytes()
            with contextlib.suppress(FileNotFoundError):
                os.close(os.open(dirs["intents"] / cid, os.O_RDONLY))
            for found in os.listdir(dirs["results"]):
                if f"-{cid}-" in found:  # as the library scans: this pod's entries only
                    (dirs["results"] / found).read_bytes()
            for plugin, stdin, env in phases[2]:
                run(plugin, stdin.replace(b"@PREV@", result), env)
            entry.unlink()
        finally:
            churn.netns_del(name)

    pods = read_job(Path(spec["job"]))
    queue = iter(pods)
    take = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while True:
            with take:
                item = next(queue, None)
            if item is None:
                return
            try:
                pod(*item)
            except Exception as exc:  # noqa: BLE001 - reported: the side then fails
                errors.append(f"{item[0]}: {exc!r}")

    cpu = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(spec["concurrency"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    leaks = os.listdir(dirs["results"]) + os.listdir(dirs["intents"])
    return {"elapsed_s": elapsed, "cpu_s": cpu, "errors": errors, "leaks": leaks}


def answer_at_once() -> None:
    """Make every plugin run of this process answer at once, as the no-op plugin would, with
    no process: what is left is the library's cost apart from running plugins."""
    import anyio

    from cni_async import SpawnExecutor

    add = json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "10.99.0.2/24"}]}).encode()
    version = json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]})

    async def exec_plugin(
        self: SpawnExecutor, path: str, *, stdin: bytes, env: dict[str, str]
    ) -> bytes:
        await anyio.lowlevel.checkpoint()
        command = env["CNI_COMMAND"]
        return add if command == "ADD" else version.encode() if command == "VERSION" else b""

    SpawnExecutor.exec_plugin = exec_plugin  # type: ignore[assignment,method-assign]


def side(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one side in a fresh process; its pods/s and CPU per pod."""
    out = subprocess.run(
        [sys.executable, __file__, "--side", json.dumps(spec)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"the {spec['mode']} side failed:\n{out.stderr}")
    record = json.loads(out.stdout.splitlines()[-1])
    return {
        "pods_per_s": spec["pods"] / record["elapsed_s"],
        "cpu_ms_per_pod": record["cpu_s"] / spec["pods"] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        spec = json.loads(args.side)
        if spec["mode"] == "blocking":
            record = run_blocking(spec)
        else:
            import anyio

            if spec["mode"] == "instant":
                answer_at_once()
            record = anyio.run(churn.run_library, spec)
        if record["errors"] or record["leaks"]:
            raise SystemExit(f"errors: {record['errors'][:5]}, leaks: {record['leaks'][:5]}")
        print(json.dumps({"elapsed_s": record["elapsed_s"], "cpu_s": record["cpu_s"]}))
        return
    work = Path(tempfile.mkdtemp(prefix="cni-async-blocking-"))
    prefix = f"cnibc{os.getpid()}"
    try:
        conf_dir, bin_dirs, networks = churn.write_configs("B", work, prefix)
        base = {
            "config": "B",
            "work": str(work),
            "conf_dir": str(conf_dir),
            "bin_dirs": bin_dirs,
            "networks": networks,
            "pods": args.pods,
            "concurrency": args.concurrency,
            "heartbeat_ms": 0,
        }
        sides = {"cni_async": "library", "no_exec": "instant", "blocking": "blocking"}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                mode = sides[name]
                pods_prefix = f"{prefix}-{name[0]}{r}"
                for leftover in ("cache-B", "blocking-cache"):
                    shutil.rmtree(work / leftover, ignore_errors=True)
                spec = {**base, "mode": mode, "prefix": pods_prefix}
                if mode == "blocking":  # the pods' stdin and environment, as cni_async's
                    spec["job"] = str(work / f"job-{r}")
                    churn.floor_job(spec, Path(spec["job"]))
                results[name].append(side(spec))
                row = results[name][-1]
                print(
                    f"round {r + 1} {name:<9} {row['pods_per_s']:7.1f} pods/s "
                    f"{row['cpu_ms_per_pod']:5.2f} ms CPU/pod",
                    flush=True,
                )
        for name, rows in results.items():
            print(
                f"median {name:<9} {statistics.median(r['pods_per_s'] for r in rows):7.1f} pods/s "
                f"{statistics.median(r['cpu_ms_per_pod'] for r in rows):5.2f} ms CPU/pod"
            )
    finally:
        for name in os.listdir("/run/netns"):
            if name.startswith(prefix):
                subprocess.run(["umount", f"/run/netns/{name}"], check=False, capture_output=True)
                Path(f"/run/netns/{name}").unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
