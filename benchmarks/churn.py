"""Pod-churn benchmark of cni_async on real CNI plugins, measured against the exec floor.

Each pod: create a network namespace (in a worker thread), ``set_up_pod``,
``get_pod_network_status``, ``tear_down_pod``, delete the namespace (likewise); ``--pods`` pods
at each ``--concurrency``. The floor is the same plugin chains with the same stdin and
environment, exec'd directly by a small C program (``floor.c``: threads, ``posix_spawn``, pipes;
the fastest direct exec we could build here), at the same concurrency, with the pod's networks
one after the other.

The peer (``--peer go-cni``, on by default when Go and Debian's go-cni packages are installed) is
the same pod cycle through containerd's go-cni, the library containerd itself uses:
``gocni/main.go``, built offline in GOPATH mode from the packages golang-go,
golang-github-containerd-go-cni-dev, golang-github-appc-cni-dev and golang-golang-x-sys-dev,
into ``$XDG_CACHE_HOME/cni-async-bench`` (a few seconds, once per source and Go version).
Without them the peer is skipped with a one-line note; ``--peer none`` turns it off.

Everything runs inside a "node" network namespace the benchmark makes (``ip netns exec``), so
bridges, gateway addresses and iptables rules never touch the machine's own namespace. The
bridges are made there beforehand with a fixed, locally administered MAC address (the bridge
plugin has no option for the bridge's own address: a bridge it makes gets whatever the kernel
gives it, different on every run, and an address never set explicitly can follow the bridge's
ports as veths come and go). Each measurement runs in fresh
processes, so CPU time and peak RSS are its own: ``--slices`` runs per side (2 by default),
interleaved cni_async, floor, go-cni, go-cni, floor, cni_async, ..., so that the machine
speeding up or slowing down during a measurement weighs on every side alike.

cni_async's runs also measure the event loop: a heartbeat task on the loop sleeps 1 ms
(``--heartbeat-ms``) over and over and records how late it wakes (``loop_lag_*``; the same
heartbeat on the idle loop before the pods start gives ``loop_lag_idle_p50_ms``, the timer's own
granularity), and the loop thread's CPU clock gives ``loop_cpu_ms_per_pod`` (``cpu_ms_per_pod``
is the whole process's). Both include the heartbeat's own CPU, which its idle beats bound:
``heartbeat_cpu_ms_per_pod`` (``--heartbeat-ms 0`` turns the heartbeat off).

Configurations: A bridge + host-local + portmap; B one no-op plugin (a static C binary, or a
shell script without a compiler: library overhead); C two bridge networks per pod.

    python benchmarks/churn.py [--config A|B|C[,...]] [--pods N] [--concurrency C[,C...]]
                               [--json PATH] [--plot PATH] [--backend asyncio|trio]
                               [--slices N] [--peer auto|go-cni|none] [--go PATH]
                               [--heartbeat-ms MS]

Defaults: configuration A, 200 pods, concurrency 1, 8 and 32, results in ./churn.json and
./churn.png.

Run as root, on Debian with containernetworking-plugins (``bash .ci/setup`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CNI_BIN = "/usr/lib/cni"
CONCURRENCY = (1, 8, 32)
PHASES = ("netns_add", "set_up", "status", "tear_down", "netns_del")
FLOOR_PHASES = ("netns_add", "add", "check", "del", "netns_del")
PEER = "go-cni"
GOCNI_SOURCE = HERE / "gocni" / "main.go"
GOPATH = "/usr/share/gocode"
# The Go packages the peer imports (besides Go's own), and the Debian packages that ship them.
GO_PACKAGES = {
    "github.com/containerd/go-cni": "golang-github-containerd-go-cni-dev",
    "github.com/containernetworking/cni/libcni": "golang-github-appc-cni-dev",
    "golang.org/x/sys/unix": "golang-golang-x-sys-dev",
}
HEARTBEAT_MS = 1.0  # the event-loop heartbeat's sleep, by default
IDLE_HEARTBEAT_S = 0.2  # how long it beats on the idle loop before the pods start

# -- network namespaces, without forking (the floor does the same in C) ----------------------

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def netns_add(name: str) -> str:
    """Create /run/netns/<name>, as floor.c does: unshare, bind-mount, return (no fork, no thread).

    The calling thread is in the new namespace only between unshare() and setns() back.
    """
    path = f"/run/netns/{name}"
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:  # unshare inside: a signal right after it must not leave us in the pod
            _check(_libc.unshare(_CLONE_NEWNET), "unshare")
            _check(
                _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None),
                "mount",
            )
        finally:
            if _libc.setns(home, _CLONE_NEWNET) != 0:
                os.abort()  # never go on in the pod's namespace
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(home)
    return path


def netns_del(name: str) -> None:
    path = f"/run/netns/{name}"
    _libc.umount2(path.encode(), _MNT_DETACH)
    os.unlink(path)


# -- configurations ---------------------------------------------------------------------------


def write_configs(config: str, work: Path, prefix: str) -> tuple[Path, list[str], list[str]]:
    """Write configuration ``config``; return (conf dir, bin dirs, networks each pod names)."""
    conf = work / f"conf-{config}"
    conf.mkdir()
    ipam = str(work / "ipam")

    def bridge(name: str, index: int) -> dict[str, Any]:
        return {
            "type": "bridge",
            "bridge": bridge_name(prefix, index),
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": f"10.23{index}.0.0/16", "dataDir": ipam},
        }

    def conflist(name: str, plugins: list[dict[str, Any]]) -> None:
        body = {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
        (conf / f"10-{name}.conflist").write_text(json.dumps(body))

    if config == "A":
        conflist(
            "bench-a",
            [bridge("bench-a", 0), {"type": "portmap", "capabilities": {"portMappings": True}}],
        )
        return conf, [CNI_BIN], []
    if config == "B":
        bin_dir = work / "noop-bin"
        bin_dir.mkdir(exist_ok=True)
        build_noop(bin_dir / "noop")
        conflist("bench-b", [{"type": "noop"}])
        return conf, [str(bin_dir)], []
    if config == "C":
        conflist("bench-c1", [bridge("bench-c1", 1)])
        conflist("bench-c2", [bridge("bench-c2", 2)])
        return conf, [CNI_BIN], ["bench-c1", "bench-c2"]
    raise SystemExit(f"unknown configuration {config!r}: use A, B or C")


BRIDGES = {"A": (0,), "B": (), "C": (1, 2)}


def bridge_name(prefix: str, index: int) -> str:
    return f"{prefix}b{index}"


def bridges(config: str, prefix: str) -> list[tuple[str, str]]:
    """(name, MAC) of each bridge of configuration ``config``.

    The MAC is locally administered and unicast (02:...), from the run's random token and the
    bridge's index.
    """
    token = prefix[-6:]
    return [
        (bridge_name(prefix, i), f"02:{token[0:2]}:{token[2:4]}:{token[4:6]}:00:{i:02x}")
        for i in BRIDGES.get(config, ())
    ]


def make_bridges(node: str, config: str, prefix: str) -> None:
    """Make the bridges of ``config`` in the node namespace, each with its fixed MAC.

    The bridge plugin (1.1 here) has no option for the bridge's own address (its ``mac`` is
    the pod's interface's), and it uses a bridge that exists. A bridge whose address was set
    keeps it; ``moved_bridges`` checks that it did.
    """
    for name, mac in bridges(config, prefix):
        ip = ["ip", "-n", node, "link"]
        subprocess.run([*ip, "add", name, "address", mac, "type", "bridge"], check=True)
        subprocess.run([*ip, "set", name, "up"], check=True)


def moved_bridges(node: str, config: str, prefix: str) -> list[str]:
    """The bridges of ``config`` whose MAC is no longer the one they were made with."""
    moved = []
    for name, mac in bridges(config, prefix):
        out = subprocess.run(
            ["ip", "-n", node, "-j", "link", "show", "dev", name],
            check=False,
            capture_output=True,
            text=True,
        )
        found = [link.get("address") for link in json.loads(out.stdout or "[]")]
        if found != [mac]:
            moved.append(f"bridge {name}: MAC {found[0] if found else 'gone'}, made with {mac}")
    return moved


def build_noop(target: Path) -> str:
    """The no-op plugin: a static C binary if a compiler is here, else a shell script."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if (
        cc
        and subprocess.run(
            [cc, "-O2", "-static", "-o", str(target), str(HERE / "noop.c")],
            check=False,
            capture_output=True,
        ).returncode
        == 0
    ):
        return "static C binary"
    target.write_text(
        '#!/bin/sh\ncat >/dev/null\ncase "$CNI_COMMAND" in\n'
        'ADD) echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.50.0.2/16"}]}\';;\n'
        'VERSION) echo \'{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}\';;\n'
        "esac\n"
    )
    target.chmod(0o755)
    return "shell script (no C compiler found)"


def build_floor(work: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("the exec floor needs a C compiler (apt-get install gcc)")
    target = work / "floor"
    subprocess.run([cc, "-O2", "-pthread", "-o", str(target), str(HERE / "floor.c")], check=True)
    return target


def find_peer(choice: str, go: str | None) -> tuple[str | None, str]:
    """The ``go`` command to build the peer with, or None and why the peer is not run (the
    one-line note to print; none for ``--peer none``)."""
    if choice == "none":
        return None, ""
    missing = []
    if go is None or shutil.which(go) is None:
        missing.append("golang-go (no `go` command)")
    missing += [
        f"{package} (no {GOPATH}/src/{path})"
        for path, package in GO_PACKAGES.items()
        if not Path(GOPATH, "src", path).is_dir()
    ]
    if not missing:
        return shutil.which(go) if go else None, ""
    why = "needs " + ", ".join(missing)
    if choice == PEER:
        raise SystemExit(f"--peer {PEER}: the peer {why}")
    return None, f"{PEER} peer skipped: it {why}"


def peer_cache_dir() -> Path:
    """Where built peers are kept between runs: ``$XDG_CACHE_HOME/cni-async-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cni-async-bench"


def build_peer(go: str, work: Path) -> Path:
    """Build ``gocni/main.go`` with go-cni, offline, in GOPATH mode; keep it in the cache.

    The binary's name is a hash of the source, of ``go version`` and of the Go packages' files
    (path, size, modification time), so a change to any of them builds a new one.
    """
    env = {
        **os.environ,
        "GOPATH": GOPATH,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(work / "gocache"),
    }
    version = subprocess.run(
        [go, "version"], check=True, capture_output=True, text=True, env=env
    ).stdout
    digest = hashlib.sha256(GOCNI_SOURCE.read_bytes() + version.encode())
    for path in GO_PACKAGES:
        for file in sorted(Path(GOPATH, "src", path).glob("*.go")):
            stat = file.stat()
            digest.update(f"{file} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    cache = peer_cache_dir()
    target = cache / f"gocni-{digest.hexdigest()[:16]}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{target.name}.{os.getpid()}"
    started = time.perf_counter()
    built = subprocess.run(
        [go, "build", "-o", str(partial), "."],
        cwd=GOCNI_SOURCE.parent,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"building the {PEER} peer failed:\n{built.stdout}{built.stderr}")
    partial.replace(target)
    for stale in cache.glob("gocni-*"):  # built from an older source or Go
        if stale != target:
            stale.unlink(missing_ok=True)
    print(
        f"{PEER} peer built in {time.perf_counter() - started:.1f} s: {target}",
        file=sys.stderr,
        flush=True,
    )
    return target


# -- statistics -------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank, as ``percentiles``), 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    return {
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": quantile(values, 0.95) * 1000,
        "p99_ms": quantile(values, 0.99) * 1000,
    }


def usage() -> tuple[float, float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, me.ru_maxrss / 1024


# -- the worker: one measurement, inside the node namespace -------------------------------------


def leaks(prefix: str, work: Path, cache_dir: Path) -> list[str]:
    found = []
    left = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    if left:
        found.append(f"{len(left)} network namespaces")
    veths = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], check=False, capture_output=True, text=True
    ).stdout.splitlines()
    if veths:
        found.append(f"{len(veths)} veths")
    ipam = work / "ipam"
    leases = [
        f"{net}/{f}"
        for net in (os.listdir(ipam) if ipam.exists() else [])
        for f in os.listdir(ipam / net)
        if f[0].isdigit()
    ]
    if leases:
        found.append(f"{len(leases)} IP leases")
    results = cache_dir / "results"
    entries = os.listdir(results) if results.exists() else []
    if entries:
        found.append(f"{len(entries)} cache entries")
    return found


async def run_library(spec: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from cni_async import CNIError, CNIPlugin, NetAttachment, PodNetwork

    prefix, pods, concurrency = spec["prefix"], spec["pods"], spec["concurrency"]
    work = Path(spec["work"])
    cache_dir = work / f"cache-{spec['config']}"
    timings: dict[str, list[float]] = {p: [] for p in PHASES}
    errors: list[str] = []
    done = 0
    async with CNIPlugin(
        spec["conf_dir"],
        spec["bin_dirs"],
        str(cache_dir),
        watch=False,
        max_concurrent_execs=None,
    ) as cni:
        networks = [NetAttachment(n) for n in spec["networks"]]
        queue = iter(range(pods))
        reported = 0.0
        # The namespaces are made and deleted in worker threads, as go-cni's harness and the
        # floor make them on their own threads: unshare and mount must not queue on the loop
        # thread, whose lag and CPU measure cni_async. Their own threads, not the library's.
        namespace_threads = anyio.CapacityLimiter(concurrency)

        def report_progress(done: int) -> None:
            # At most ten lines a second (and the last): the floor reports nothing while it runs.
            nonlocal reported
            if done == pods or time.perf_counter() - reported >= 0.1:
                reported = time.perf_counter()
                print(f"progress {done}", file=sys.stderr, flush=True)

        async def runner() -> None:
            # One of `concurrency` tasks, each taking the next pod when done with the last:
            # a task per pod started up front would weigh on peak RSS for large --pods.
            for i in queue:
                await cycle(i)

        async def cycle(i: int) -> None:
            nonlocal done
            name = f"{prefix}-l{i}"
            t0 = time.perf_counter()
            path = await anyio.to_thread.run_sync(netns_add, name, limiter=namespace_threads)
            pod = PodNetwork(f"pod{i}", "churn", name, f"uid{i}", path, networks)
            t1 = time.perf_counter()
            try:
                await cni.set_up_pod(pod)
                t2 = time.perf_counter()
                await cni.get_pod_network_status(pod)
                t3 = time.perf_counter()
                await cni.tear_down_pod(pod)
                t4 = time.perf_counter()
            except CNIError as exc:
                errors.append(f"pod {i}: {exc}")
                with anyio.CancelScope(shield=True):
                    try:
                        await cni.tear_down_pod(pod)
                    except CNIError as again:
                        errors.append(f"pod {i} cleanup: {again}")
                return
            finally:
                t5 = time.perf_counter()
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(netns_del, name, limiter=namespace_threads)
                done += 1
                report_progress(done)
            for phase, value in zip(
                PHASES,
                (t1 - t0, t2 - t1, t3 - t2, t4 - t3, time.perf_counter() - t5),
                strict=True,
            ):
                timings[phase].append(value)

        lags: list[float] = []
        idle_lags: list[float] = []
        period = spec.get("heartbeat_ms", HEARTBEAT_MS) / 1000

        def thread_cpu() -> float:
            return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)  # this is the loop thread

        async def heartbeat(into: list[float]) -> None:
            # Sleeps on the loop the pods run on, over and over: how late it wakes is how long
            # a task that became ready waits for the loop (plus the timer's own granularity,
            # which the idle loop's beats show).
            while True:
                before = time.perf_counter()
                await anyio.sleep(period)
                into.append(time.perf_counter() - before - period)

        idle_cpu = thread_cpu()
        if period > 0:
            with anyio.move_on_after(IDLE_HEARTBEAT_S):
                await heartbeat(idle_lags)
        idle_cpu = thread_cpu() - idle_cpu
        cpu0, kids0, _ = usage()
        loop_cpu0 = thread_cpu()
        started = time.perf_counter()
        async with anyio.create_task_group() as beat:
            if period > 0:
                beat.start_soon(heartbeat, lags)
            async with anyio.create_task_group() as tg:
                for _ in range(min(concurrency, pods)):
                    tg.start_soon(runner)
            elapsed = time.perf_counter() - started
            beat.cancel_scope.cancel()
        loop_cpu = thread_cpu() - loop_cpu0
        cpu1, kids1, rss = usage()
    return {
        "elapsed_s": elapsed,
        "samples": timings,
        "loop_lag_samples": lags,
        "loop_lag_idle_samples": idle_lags,
        "loop_cpu_s": loop_cpu,
        # What the heartbeat itself costs the loop, at most: its idle beats' CPU, beat for beat
        # (a busy loop is awake for other reasons too, so a beat costs it less).
        "heartbeat_cpu_s": idle_cpu / len(idle_lags) * len(lags) if idle_lags else 0.0,
        "cpu_s": cpu1 - cpu0,
        "children_cpu_s": kids1 - kids0,
        "peak_rss_mib": rss,
        "errors": errors,
        "leaks": leaks(prefix, work, cache_dir),
    }


def floor_job(spec: dict[str, Any], job: Path) -> None:
    """The floor's job file: every plugin exec of every pod, with cni_async's stdin and env."""
    import anyio

    from cni_async import CNIPlugin, NetAttachment, PodNetwork
    from cni_async._testing import plan_networks, plugin_stdin, runtime_conf

    async def load() -> CNIPlugin:
        cache = str(Path(spec["work"]) / "no-cache")  # never the host's /var/lib/cni
        async with CNIPlugin(spec["conf_dir"], spec["bin_dirs"], cache, watch=False) as cni:
            return cni

    cni = anyio.run(load)
    engine = cni.engine
    marker = {"@PREV@": True}
    prefix = spec["prefix"]
    networks = [NetAttachment(n) for n in spec["networks"]]
    with open(job, "wb") as out:
        out.write(f"{spec['pods']} {spec['concurrency']}\n".encode())
        for i in range(spec["pods"]):
            name = f"{prefix}-f{i}"
            pod = PodNetwork(f"pod{i}", "churn", name, f"uid{i}", f"/run/netns/{name}", networks)
            plan = plan_networks(cni.config, pod, None)
            assert isinstance(plan, list)
            steps = []
            for phase, verb in enumerate(("ADD", "CHECK", "DEL")):
                for index, (network, ifname) in enumerate(plan):
                    rt = runtime_conf(pod, network.name, ifname, pod.netns, ())
                    env = engine.plugin_env(verb, rt)
                    chain = network.plugins if verb != "DEL" else tuple(reversed(network.plugins))
                    for k, plugin in enumerate(chain):
                        with_prev = verb != "ADD" or k > 0
                        stdin = plugin_stdin(
                            network,
                            plugin,
                            prev_result=marker if with_prev else None,
                            capability_args=rt.capability_args,
                        ).replace(b'{"@PREV@":true}', b"@PREV@")
                        path = engine.executor.find_plugin(plugin.type, engine.bin_dirs).encode()
                        env_block = b"".join(f"{k_}={v}".encode() + b"\0" for k_, v in env.items())
                        steps.append(
                            f"{phase} {index} {int(k == 0)} {len(path)} {len(stdin)} "
                            f"{len(env_block)}\n".encode()
                            + path
                            + stdin
                            + env_block
                        )
            out.write(f"{name} {len(steps)}\n".encode() + b"".join(steps))


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    work = Path(spec["work"])
    job = work / f"floor-{spec['config']}-{spec['concurrency']}.job"
    floor_job(spec, job)
    _, kids0, _ = usage()
    out = subprocess.run([spec["floor"], str(job)], check=True, capture_output=True, text=True)
    _, kids1, _ = usage()
    # Timed inside the floor, from its first pod to its last, as run_library times its pods:
    # neither side's start-up (reading the job, loading the configuration) counts.
    *lines, last = out.stdout.splitlines()
    label, _, value = last.partition(" ")
    assert label == "elapsed", f"unexpected floor output: {last!r}"
    elapsed = float(value)
    rows = [line.split() for line in lines]
    timings = {p: [float(r[i]) for r in rows] for i, p in enumerate(FLOOR_PHASES)}
    failed = [
        f"pod {i}: " + ("its namespace could not be made" if r[5] == "-2" else f"step {r[5]}")
        for i, r in enumerate(rows)
        if r[5] != "-1"
    ]
    return {
        "floor_elapsed_s": elapsed,
        "floor_samples": timings,
        "floor_cpu_s": kids1 - kids0,
        "floor_errors": failed + ([out.stderr.strip()] if out.stderr.strip() else []),
        "floor_leaks": leaks(spec["prefix"] + "-f", work, work / "no-cache"),
    }


def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """The go-cni peer on the same pods: one process, started from this worker (in the node
    namespace, and dying with it, as the floor does), timed inside as run_library times."""
    work = Path(spec["work"])
    prefix = spec["prefix"] + "-g"
    cache_dir = work / f"gocni-cache-{spec['config']}"
    command = [
        spec["peer_binary"],
        "-conf-dir",
        spec["conf_dir"],
        "-bin-dirs",
        ":".join(spec["bin_dirs"]),
        "-networks",
        ",".join(spec["networks"]),
        "-cache-dir",
        str(cache_dir),
        "-netns-prefix",
        prefix,
        "-pods",
        str(spec["pods"]),
        "-concurrency",
        str(spec["concurrency"]),
    ]
    out = subprocess.run(command, check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {PEER} peer failed ({out.returncode}):\n{out.stderr}")
    record = json.loads(out.stdout)
    return {
        "peer_elapsed_s": record["elapsed_s"],
        "peer_samples": record["samples"],
        "peer_cpu_s": record["cpu_s"],
        "peer_children_cpu_s": record["children_cpu_s"],
        "peer_peak_rss_mib": record["peak_rss_mib"],
        # Plugins' stderr is the peer's, as it is the floor's: anything there is a failure.
        "peer_errors": record["errors"] + ([out.stderr.strip()] if out.stderr.strip() else []),
        "peer_leaks": leaks(prefix, work, cache_dir),
    }


def worker(spec_json: str) -> None:
    # Die with the driver (killed outright, it cannot stop us), as the floor dies with us.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    spec = json.loads(spec_json)
    if spec["mode"] == "floor":
        record = run_floor(spec)
    elif spec["mode"] == "peer":
        record = run_peer(spec)
    else:
        import anyio

        record = anyio.run(run_library, spec, backend=spec.get("backend", "asyncio"))
    # A file, not stdout: the driver reads stderr (the progress) until the end, and every
    # pod's timings would fill a pipe long before that.
    Path(spec["result"]).write_text(json.dumps(record))


# -- the driver -------------------------------------------------------------------------------


def progress(label: str, done: int, total: int) -> None:
    """A progress bar on a terminal; elsewhere (CI logs) only the finished line."""
    if not sys.stderr.isatty() and done < total:
        return
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r  {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks clean up (``timeout``, ``kill``)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def remove_node(prefix: str, node: str, work: Path) -> None:
    """Remove what a run made: pod namespaces a dead worker left, the node namespace, ``work``."""
    for name in os.listdir("/run/netns"):
        if name.startswith(prefix) and name != node:
            subprocess.run(["umount", f"/run/netns/{name}"], check=False, capture_output=True)
            Path(f"/run/netns/{name}").unlink(missing_ok=True)
    subprocess.run(["ip", "netns", "del", node], check=False)
    shutil.rmtree(work, ignore_errors=True)


def worker_command(node: str, script: str, spec: dict[str, Any]) -> list[str]:
    """Run ``script --worker SPEC`` inside the node namespace (see the module docstring)."""
    return ["ip", "netns", "exec", node, sys.executable, script, "--worker", json.dumps(spec)]


def start_worker(node: str, script: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """``script`` as a worker in the node namespace, its progress on stderr; in a session of
    its own, so that stopping it stops its floor and plugins too."""
    return subprocess.Popen(
        worker_command(node, script, spec),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def measure(node: str, spec: dict[str, Any], label: str) -> dict[str, Any]:
    result = Path(spec["work"]) / f"result-{spec['prefix']}-{spec['mode']}.json"
    spec = {**spec, "result": str(result)}
    proc = start_worker(node, str(Path(__file__).resolve()), spec)
    assert proc.stderr is not None
    other: list[str] = []
    progress(label, 0, spec["pods"])
    done = 0
    try:
        for line in proc.stderr:
            if line.startswith("progress "):
                done = int(line.split()[1])
                progress(label, done, spec["pods"])
            else:
                other.append(line)
    except BaseException:  # SIGTERM or ^C: stop the worker before the caller cleans up
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.wait() != 0:
        sys.stderr.write("\n" + "".join(other))
        raise SystemExit(f"the {spec['mode']} run failed")
    if done < spec["pods"]:
        progress(label, spec["pods"], spec["pods"])
    sys.stderr.write("\n")
    sys.stderr.flush()
    record: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    return record


def measure_interleaved(node: str, spec: dict[str, Any], pods: int, slices: int) -> dict[str, Any]:
    """Measure cni_async, the floor and the peer on ``pods`` pods each, in ``slices`` runs per side.

    The runs alternate cni_async, floor, peer, peer, floor, cni_async, ... (the peer when
    ``spec["peer"]`` names one) so that a machine getting steadily faster or slower during the
    measurement (a neighbour starting or stopping) weighs on every side alike. Each run is a
    fresh process; times, CPU and latencies are summed or pooled over a side's runs, and peak RSS
    is the largest of them.
    """
    sizes = [pods // slices + (1 if i < pods % slices else 0) for i in range(slices)]
    peer = spec.get("peer")
    modes = ("library", "floor", "peer") if peer else ("library", "floor")
    names = {"library": "cni_async", "floor": "floor", "peer": peer}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    label = f"{spec['config']} C={spec['concurrency']}"
    for index, size in enumerate(s for s in sizes if s):
        for mode in modes if index % 2 == 0 else modes[::-1]:
            part = {**spec, "mode": mode, "pods": size, "prefix": f"{spec['prefix']}s{index}"}
            suffix = f" {index + 1}/{slices}" if slices > 1 else ""
            runs[mode].append(measure(node, part, f"{label} {names[mode]}{suffix}"))
    library, floor = runs["library"], runs["floor"]
    elapsed = sum(r["elapsed_s"] for r in library)
    floor_elapsed = sum(r["floor_elapsed_s"] for r in floor)
    cpu = sum(r["cpu_s"] for r in library)
    loop_cpu = sum(r.get("loop_cpu_s", 0.0) for r in library)
    heartbeat_cpu = sum(r.get("heartbeat_cpu_s", 0.0) for r in library)
    lags = [v * 1000 for r in library for v in r.get("loop_lag_samples", ())]
    idle_lags = [v * 1000 for r in library for v in r.get("loop_lag_idle_samples", ())]
    record = {
        "slices": len(library),
        "elapsed_s": elapsed,
        "pods_per_s": pods / elapsed,
        "phases": pooled(library, "samples", PHASES),
        "cpu_s": cpu,
        "children_cpu_s": sum(r["children_cpu_s"] for r in library),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in library),
        "errors": [e for r in library for e in r["errors"]],
        "leaks": [f"run {i + 1}: {leak}" for i, r in enumerate(library) for leak in r["leaks"]],
        "floor_elapsed_s": floor_elapsed,
        "floor_pods_per_s": pods / floor_elapsed,
        "floor_phases": pooled(floor, "floor_samples", FLOOR_PHASES),
        "floor_cpu_s": sum(r["floor_cpu_s"] for r in floor),
        "floor_errors": [e for r in floor for e in r["floor_errors"]],
        "floor_leaks": [
            f"run {i + 1}: {leak}" for i, r in enumerate(floor) for leak in r["floor_leaks"]
        ],
        "ratio_to_floor": floor_elapsed / elapsed,
        "cpu_ms_per_pod": cpu * 1000 / pods,
        "loop_cpu_s": loop_cpu,
        "loop_cpu_ms_per_pod": loop_cpu * 1000 / pods,
        "loop_lag_p50_ms": statistics.median(lags) if lags else 0.0,
        "loop_lag_p99_ms": quantile(lags, 0.99),
        "loop_lag_max_ms": max(lags, default=0.0),
        "loop_lag_idle_p50_ms": statistics.median(idle_lags) if idle_lags else 0.0,
        "loop_beats": len(lags),
        "heartbeat_ms": spec.get("heartbeat_ms", HEARTBEAT_MS),
        "heartbeat_cpu_ms_per_pod": heartbeat_cpu * 1000 / pods,
        "peer": peer,
    }
    if peer:
        side = runs["peer"]
        peer_elapsed = sum(r["peer_elapsed_s"] for r in side)
        peer_cpu = sum(r["peer_cpu_s"] for r in side)
        record |= {
            "peer_elapsed_s": peer_elapsed,
            "peer_pods_per_s": pods / peer_elapsed,
            "ratio_to_peer": peer_elapsed / elapsed,
            "peer_phases": pooled(side, "peer_samples", PHASES),
            "peer_cpu_s": peer_cpu,
            "peer_cpu_ms_per_pod": peer_cpu * 1000 / pods,
            "peer_children_cpu_s": sum(r["peer_children_cpu_s"] for r in side),
            "peer_peak_rss_mib": max(r["peer_peak_rss_mib"] for r in side),
            "peer_errors": [e for r in side for e in r["peer_errors"]],
            "peer_leaks": [
                f"run {i + 1}: {leak}" for i, r in enumerate(side) for leak in r["peer_leaks"]
            ],
        }
    return record


def pooled(
    runs: list[dict[str, Any]], key: str, phases: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Latency percentiles per phase over every run's samples together."""
    return {p: percentiles([v for r in runs for v in r[key][p]]) for p in phases}


def markdown(records: list[dict[str, Any]]) -> str:
    """The records as a table; the peer's columns when a record has a peer."""
    peer = next((r["peer"] for r in records if r.get("peer")), None)

    def ms(phase: dict[str, float], *keys: str) -> str:
        return " / ".join(f"{phase[f'{k}_ms']:.1f}" for k in keys)

    def peer_ms(r: dict[str, Any], name: str) -> str:
        return ms(r["peer_phases"][name], "p50", "p99") if r.get("peer") else "-"

    def loop_cpu(r: dict[str, Any]) -> str:
        # The loop thread's CPU, and the most of it the heartbeat itself can account for.
        cell = f"{r.get('loop_cpu_ms_per_pod', 0.0):.2f}"
        return cell + (f" ({r['heartbeat_cpu_ms_per_pod']:.2f})" if r.get("loop_beats") else "")

    def lag(r: dict[str, Any]) -> str:
        if not r.get("loop_beats"):
            return "-"
        return " / ".join(f"{r[f'loop_lag_{k}_ms']:.2f}" for k in ("p50", "p99", "max"))

    columns: list[tuple[str, str, Any]] = [
        ("config", "---", lambda r: r["config"]),
        ("C", "---:", lambda r: r["concurrency"]),
        ("pods/s", "---:", lambda r: f"{r['pods_per_s']:.1f}"),
        ("floor pods/s", "---:", lambda r: f"{r['floor_pods_per_s']:.1f}"),
        ("ratio to floor", "---:", lambda r: f"{r['ratio_to_floor']:.2f}"),
    ]
    if peer:
        columns += [
            (
                f"{peer} pods/s",
                "---:",
                lambda r: f"{r['peer_pods_per_s']:.1f}" if r.get("peer") else "-",
            ),
            (
                f"ratio to {peer}",
                "---:",
                lambda r: f"{r['ratio_to_peer']:.2f}" if r.get("peer") else "-",
            ),
        ]
    columns.append(
        ("set-up p50/p95/p99 ms", "---", lambda r: ms(r["phases"]["set_up"], "p50", "p95", "p99"))
    )
    if peer:
        columns.append((f"{peer} set-up p50/p99 ms", "---", lambda r: peer_ms(r, "set_up")))
    columns.append(("status p50/p99 ms", "---", lambda r: ms(r["phases"]["status"], "p50", "p99")))
    if peer:
        columns.append((f"{peer} status p50/p99 ms", "---", lambda r: peer_ms(r, "status")))
    columns.append(
        ("teardown p50/p99 ms", "---", lambda r: ms(r["phases"]["tear_down"], "p50", "p99"))
    )
    if peer:
        columns.append((f"{peer} teardown p50/p99 ms", "---", lambda r: peer_ms(r, "tear_down")))
    columns += [
        ("CPU ms/pod", "---:", lambda r: f"{r['cpu_s'] * 1000 / r['pods']:.2f}"),
        ("loop CPU ms/pod (heartbeat)", "---:", loop_cpu),
        ("loop lag p50/p99/max ms", "---", lag),
        ("children CPU ms/pod", "---:", lambda r: f"{r['children_cpu_s'] * 1000 / r['pods']:.1f}"),
        ("peak RSS MiB", "---:", lambda r: f"{r['peak_rss_mib']:.1f}"),
        ("errors", "---:", lambda r: len(r["errors"])),
        ("leaks", "---", lambda r: ", ".join(r["leaks"]) or "none"),
    ]
    lines = [
        "| " + " | ".join(c[0] for c in columns) + " |",
        "|" + "|".join(c[1] for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(str(c[2](r)) for c in columns) + " |" for r in records]
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: str) -> None:
    """Throughput and set-up latency against concurrency, one colour per configuration.

    Sized to be read at the width of a documentation page (8.6 x 4.9 inches at 150 dpi, fonts of
    11-13 points); the legends are below the panels, where they cover no point.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
    except ImportError:
        print(f"(no plot: matplotlib is not installed; {path} not written)", file=sys.stderr)
        return
    described = {
        "A": "A: bridge + host-local + portmap",
        "B": "B: one no-op plugin",
        "C": "C: two bridge networks",
    }
    configs = sorted({r["config"] for r in records})
    peer = next((r["peer"] for r in records if r.get("peer")), None)
    with plt.rc_context(
        {
            "font.size": 12,
            "axes.titlesize": 13,
            "axes.labelsize": 12,
            "xtick.labelsize": 11.5,
            "ytick.labelsize": 11.5,
            "legend.fontsize": 11.5,
            "lines.linewidth": 2,
            "lines.markersize": 7,
            "lines.markeredgewidth": 2,
        }
    ):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 4.9), layout="constrained")
        for index, config in enumerate(configs):
            color = f"C{index}"
            rows = sorted(
                (r for r in records if r["config"] == config), key=lambda r: r["concurrency"]
            )
            xs = [r["concurrency"] for r in rows]
            up = [r["phases"]["set_up"] for r in rows]
            left.plot(xs, [r["pods_per_s"] for r in rows], "o-", color=color)
            left.plot(xs, [r["floor_pods_per_s"] for r in rows], "x--", color=color)
            right.plot(xs, [u["p50_ms"] for u in up], "o-", color=color)
            right.plot(xs, [u["p95_ms"] for u in up], "x--", color=color)
            peered = [r for r in rows if r.get("peer")]
            if peered:
                xs = [r["concurrency"] for r in peered]
                left.plot(xs, [r["peer_pods_per_s"] for r in peered], "s:", color=color)
                right.plot(
                    xs, [r["peer_phases"]["set_up"]["p50_ms"] for r in peered], "s:", color=color
                )
        levels = sorted({r["concurrency"] for r in records})
        left.set(xlabel="concurrency", ylabel="pods/s (log scale)", title="Throughput")
        right.set(xlabel="concurrency", ylabel="ms (log scale)", title="set_up_pod latency")
        styles = {
            left: [("o-", "cni_async"), ("x--", "exec floor")],
            right: [("o-", "p50"), ("x--", "p95")],
        }
        if peer:
            styles[left].append(("s:", peer))
            styles[right].append(("s:", f"{peer} p50"))
        for ax, entries in styles.items():
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.xaxis.set_minor_locator(NullLocator())
            # Plain numbers at 1, 2 and 5 times each power of ten, not only at 10^n.
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.35)
            ax.margins(x=0.08)
            handles = [
                Line2D(
                    [],
                    [],
                    color="0.3",
                    linestyle="--" if "--" in style else ":" if ":" in style else "-",
                    marker=style[0],
                    label=label,
                )
                for style, label in entries
            ]
            ax.legend(
                handles=handles,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.17),
                ncols=len(entries),
                frameon=False,
                handlelength=2.6,
                columnspacing=1.0,
            )
        fig.legend(
            handles=[
                Line2D([], [], color=f"C{i}", linewidth=6, label=described.get(c, c))
                for i, c in enumerate(configs)
            ],
            loc="outside lower center",
            ncols=len(configs),
            frameon=False,
            handlelength=1.2,
            columnspacing=1.5,
        )
        fig.savefig(path, dpi=150, bbox_inches="tight", pad_inches=0.1, facecolor="white")
        plt.close(fig)
    print(f"plot written to {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="A", help="A, B or C, or several: A,B,C")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument(
        "--json", dest="json_path", default="churn.json", help="write the records as JSON here"
    )
    parser.add_argument(
        "--plot", dest="plot_path", default="churn.png", help="write a PNG plot here"
    )
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument(
        "--slices",
        type=int,
        default=2,
        help="split each side into this many runs, interleaved: cni_async, floor, peer, peer, "
        "floor, cni_async, ... (default 2)",
    )
    parser.add_argument(
        "--peer",
        default="auto",
        choices=("auto", PEER, "none"),
        help=f"the same pods through containerd's {PEER} (gocni/main.go), beside cni_async: "
        f"auto (the default) runs it when Go and the packages are installed, {PEER} requires it",
    )
    parser.add_argument(
        "--go", default="go", help="the go command the peer is built with (default: go on PATH)"
    )
    parser.add_argument(
        "--heartbeat-ms",
        type=float,
        default=HEARTBEAT_MS,
        help="the period of the event-loop heartbeat that measures loop lag in cni_async's runs "
        f"(default {HEARTBEAT_MS:g}; 0 turns it off: each beat costs the loop some CPU)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.worker)
        return 0
    if options.slices < 1:
        raise SystemExit("--slices must be at least 1")
    if options.heartbeat_ms < 0:
        raise SystemExit("--heartbeat-ms must be 0 (off) or more")
    if os.geteuid() != 0:
        raise SystemExit("run this as root: it creates network namespaces")
    configs = [c.strip().upper() for c in options.config.split(",")]
    levels = [int(c) for c in options.concurrency.split(",")]
    go, peer_note = find_peer(options.peer, options.go)
    if peer_note:
        print(peer_note, file=sys.stderr, flush=True)
    prefix = "cnb" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    node = f"{prefix}-node"
    records: list[dict[str, Any]] = []
    moved: list[str] = []
    exit_on_sigterm()
    subprocess.run(["ip", "netns", "add", node], check=True)
    try:
        subprocess.run(["ip", "-n", node, "link", "set", "lo", "up"], check=True)
        floor = build_floor(work)
        peer_binary = build_peer(go, work) if go else None
        for config in configs:
            conf, bin_dirs, networks = write_configs(config, work, prefix)
            make_bridges(node, config, prefix)
            for concurrency in levels:
                spec = {
                    "config": config,
                    "pods": options.pods,
                    "concurrency": concurrency,
                    "conf_dir": str(conf),
                    "bin_dirs": bin_dirs,
                    "networks": networks,
                    "work": str(work),
                    "prefix": f"{prefix}{config.lower()}{concurrency}",
                    "floor": str(floor),
                    "backend": options.backend,
                    "heartbeat_ms": options.heartbeat_ms,
                    "peer": PEER if peer_binary else None,
                    "peer_binary": str(peer_binary),
                }
                record = {
                    "config": config,
                    "concurrency": concurrency,
                    "pods": options.pods,
                    **measure_interleaved(node, spec, options.pods, options.slices),
                }
                records.append(record)
            moved += [f"{config}: {what}" for what in moved_bridges(node, config, prefix)]
    finally:
        remove_node(prefix, node, work)
    print()
    print(markdown(records))
    problems = [
        f"{r['config']} C={r['concurrency']}: {what}"
        for r in records
        for what in (
            r["errors"]
            + r["leaks"]
            + r["floor_errors"]
            + r["floor_leaks"]
            + r.get("peer_errors", [])
            + r.get("peer_leaks", [])
        )
    ]
    problems += moved
    print("\nleaks: none (namespaces, veths, IP leases, cache entries)" if not problems else "")
    for problem in problems:
        print(f"problem: {problem}")
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(records, indent=2) + "\n")
        print(f"JSON written to {options.json_path}")
    if options.plot_path:
        plot(records, options.plot_path)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
