"""Scale benchmark of cni_async: a full node, a runtime restart, GC of many entries, many files.

Four measurements, each in a fresh worker process inside a "node" network namespace of its own
(``ip netns exec``, as ``churn.py`` does; its helpers are reused), on Debian's real plugins
(``/usr/lib/cni``) where pods are involved and on a small shell-script fake plugin where not:

1. **fill and drain**: ``--pods`` pods (default 500) alive at once on one bridge network
   (bridge + host-local, a 10.77.0.0/16 inside the node namespace; the bridge made beforehand
   with a pinned MAC, at most 1000 pods since a bridge takes at most 1024 ports), set up in
   waves of 50 at concurrency 8, then torn down in waves of 50 at concurrency 8. For each wave:
   set-up or teardown p50/p99 against the pods alive, and the process's RSS (slope by a
   linear fit: RSS per live pod).
2. **restart with the node full** (between fill and drain): the ``CNIPlugin`` is closed and a
   fresh one opened over the same cache and configuration directories (its start timed); then
   ``gc(valid)`` with every tenth pod left out of ``valid`` (those must be torn down: veths,
   leases and cache entries gone), then ``get_pod_network_status`` of every remaining pod (the
   whole pass timed, at concurrency 8); leases, cache entries and veths on the bridge must match
   the live pods exactly, container for container.
3. **GC of stale entries**: ``--stale`` cache entries (default 10 000, and a tenth and a third
   of that, to show the growth) of a network whose plugin is the fake, with no network
   namespace, written through the library's cache (``CNIPlugin.engine``); ``gc([])`` timed, with
   the peak RSS above its start, and the cache scan alone under tracemalloc.
4. **many files**: ``CNIPlugin`` start-up (``watch=True`` and ``watch=False``) and ``reload()``
   with ``--files`` network files (default 200, and an eighth, a quarter and half of that) of
   the fake plugin's type; then pods churning on the bridge network at concurrency 8
   (``--churn-pods`` pods with and as many without a ``reload()`` every 0.2 s, default 100,
   in rounds without, with, with, without), the bridge network's file among ``--files`` others.

    python benchmarks/scale.py [--pods N] [--stale N] [--files N] [--churn-pods N]
                               [--json PATH] [--plot PATH] [--backend asyncio|trio]

Results in ./scale.json (a top-level ``leaks`` list, empty when nothing leaked) and ./scale.png.
Run as root, on Debian with containernetworking-plugins (``bash .ci/setup`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import churn

from cni_async import (
    CNIError,
    CNIPlugin,
    NetAttachment,
    PodNetwork,
    RuntimeConf,
    parse_result,
)
from cni_async._testing import for_each

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NETWORK = "scale-net"
SUBNET = "10.77.0.0/16"
STALE_NETWORK = "stale-net"
FAKE = "scalefake"
STEP = 50  # pods per wave
CONCURRENCY = 8
MAX_PODS = 1000  # a Linux bridge takes at most 1024 ports
GC_EVERY = 10  # every tenth pod is left out of gc's valid pods
RELOAD_EVERY = 0.2  # seconds between reloads during the churn
START_REPEATS = 5
RELOAD_REPEATS = 10
WRITERS = 64  # concurrent cache writes while making stale entries
FAKE_PLUGIN = """#!/bin/sh
# The scale benchmark's fake plugin: logs the command, answers VERSION and ADD, nothing else.
# Shell built-ins only (no cat, no dirname): one process per run.
while read -r _; do :; done
echo "$CNI_COMMAND $CNI_CONTAINERID" >>"${0%/*}/../fake-calls.log"
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],\
"ips":[{"address":"10.88.0.2/16","interface":0}]}';;
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":\
["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}';;
esac
"""
FAKE_RESULT = (
    b'{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],'
    b'"ips":[{"address":"10.88.0.2/16","interface":0}]}'
)

# -- small helpers (worker side) --------------------------------------------------------------


def say(label: str, done: int, total: int) -> None:
    """A progress line for the driver (stderr: the result goes to a file)."""
    print(f"progress {done} {total} {label}", file=sys.stderr, flush=True)


def rss_mib() -> float:
    """This process's resident memory now, after a collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current RSS (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ms(values: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (churn's percentiles: median, nearest rank)."""
    found = churn.percentiles(list(values))
    return {"p50_ms": found["p50_ms"], "p99_ms": found["p99_ms"], "count": float(len(values))}


async def timed(into: list[float], call: Awaitable[object]) -> None:
    started = time.perf_counter()
    await call
    into.append(time.perf_counter() - started)


def pod_for(prefix: str, i: int) -> PodNetwork:
    """Pod ``i`` on the bridge network; its container ID is its namespace's name."""
    name = f"{prefix}{i}"
    return PodNetwork(
        f"pod{i}", "scale", name, f"uid{i}", f"/run/netns/{name}", [NetAttachment(NETWORK)]
    )


@contextlib.asynccontextmanager
async def open_plugin(spec: dict[str, Any], *, watch: bool = False) -> AsyncIterator[CNIPlugin]:
    async with CNIPlugin(spec["conf_dir"], spec["bin_dirs"], spec["cache_dir"], watch=watch) as cni:
        yield cni


# -- what the node holds ----------------------------------------------------------------------


def leased_ids(ipam: Path) -> list[str]:
    """The container ID of every host-local lease (a file named by its address)."""
    nets = list(ipam.iterdir()) if ipam.exists() else []
    return [
        lease.read_text().splitlines()[0].strip()
        for net in nets
        for lease in net.iterdir()
        if lease.name[0].isdigit()
    ]


def cached_ids(cache_dir: Path) -> list[str]:
    """The container ID of every cache entry of the bridge network (``net-ID-ifname``)."""
    results = cache_dir / "results"
    names = os.listdir(results) if results.exists() else []
    return [n[len(NETWORK) + 1 :].rsplit("-", 1)[0] for n in names if n.startswith(NETWORK)]


def bridge_ports(bridge: str) -> int:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], check=True, capture_output=True, text=True
    )
    return len(out.stdout.splitlines())


def node_matches(spec: dict[str, Any], live: set[str]) -> dict[str, Any]:
    """Leases, cache entries and bridge ports against the live pods, container for container."""
    leases = leased_ids(Path(spec["work"]) / "ipam")
    entries = cached_ids(Path(spec["cache_dir"]))
    ports = bridge_ports(spec["bridge"])
    problems = []
    for what, ids in (("leases", leases), ("cache entries", entries)):
        extra, lost = set(ids) - live, live - set(ids)
        if extra or lost or len(ids) != len(set(ids)):
            problems.append(
                f"{what}: {len(ids)} for {len(live)} live pods "
                f"({len(extra)} of gone pods, {len(lost)} live pods without)"
            )
    if ports != len(live):
        problems.append(f"veths on the bridge: {ports} for {len(live)} live pods")
    return {
        "live_pods": len(live),
        "leases": len(leases),
        "cache_entries": len(entries),
        "bridge_veths": ports,
        "problems": problems,
    }


# -- 1 and 2: fill, restart, GC, status, drain ------------------------------------------------


async def timed_each(
    items: Sequence[int],
    what: str,
    call: Callable[[int], Awaitable[object]],
    errors: list[str],
) -> list[float]:
    """``call(i)`` for every item at CONCURRENCY: the latency of each that succeeded."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        try:
            await timed(latencies, call(i))
        except CNIError as exc:
            errors.append(f"{what} of pod {i}: {exc}")

    await for_each(len(items), lambda index: one(items[index]), limit=CONCURRENCY)
    return latencies


def wave_cost(before: tuple[float, float, float], pods: int) -> dict[str, float]:
    """CPU per pod of this process and of the plugins (its children) since ``before``, and
    RSS now."""
    cpu, children, _ = churn.usage()
    return {
        "cpu_ms_per_pod": (cpu - before[0]) * 1000 / pods,
        "plugin_cpu_ms_per_pod": (children - before[1]) * 1000 / pods,
        "rss_mib": rss_mib(),
    }


async def fill(cni: CNIPlugin, spec: dict[str, Any], errors: list[str]) -> list[dict[str, Any]]:
    """Set up ``pods`` pods in waves of STEP at CONCURRENCY; a record per wave."""
    prefix, pods = spec["prefix"], spec["pods"]
    waves: list[dict[str, Any]] = []

    async def up(i: int) -> None:
        await cni.set_up_pod(pod_for(prefix, i))

    for first in range(0, pods, STEP):
        wave = range(first, min(first + STEP, pods))
        for i in wave:  # the wave's namespaces first: not part of the set-up's latency
            churn.netns_add(f"{prefix}{i}")
        before = churn.usage()
        latencies = await timed_each(wave, "set-up", up, errors)
        waves.append({"live_before": first, "live_after": wave.stop, **ms(latencies)})
        waves[-1] |= wave_cost(before, len(wave))
        say("fill: set_up_pod", wave.stop, pods)
    return waves


async def drain(
    cni: CNIPlugin, spec: dict[str, Any], alive: list[int], errors: list[str]
) -> list[dict[str, Any]]:
    """Tear down every pod of ``alive`` in waves of STEP at CONCURRENCY; a record per wave."""
    prefix = spec["prefix"]
    waves: list[dict[str, Any]] = []

    async def down(i: int) -> None:
        await cni.tear_down_pod(pod_for(prefix, i))

    for first in range(0, len(alive), STEP):
        wave = alive[first : first + STEP]
        before = churn.usage()
        latencies = await timed_each(wave, "teardown", down, errors)
        cost = wave_cost(before, len(wave))
        for i in wave:
            churn.netns_del(f"{prefix}{i}")
        left = len(alive) - first - len(wave)
        waves.append({"live_before": len(alive) - first, "live_after": left, **ms(latencies)})
        waves[-1] |= cost
        say("drain: tear_down_pod", first + len(wave), len(alive))
    return waves


async def restart(cni: CNIPlugin, spec: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """GC with a tenth of the pods left out, check the node, status of every other pod."""
    prefix, pods = spec["prefix"], spec["pods"]
    keep = [i for i in range(pods) if i % GC_EVERY]
    started = time.perf_counter()
    try:
        await cni.gc([pod_for(prefix, i) for i in keep])
    except CNIError as exc:
        errors.append(f"gc: {exc}")
    gc_s = time.perf_counter() - started
    say("restart: gc", 1, 1)
    after_gc = node_matches(spec, {f"{prefix}{i}" for i in keep})

    async def status(i: int) -> None:
        await cni.get_pod_network_status(pod_for(prefix, i))

    started = time.perf_counter()
    latencies = await timed_each(keep, "status", status, errors)
    status_s = time.perf_counter() - started
    say("restart: status", len(keep), len(keep))
    return {
        "collected_pods": pods - len(keep),
        "valid_pods": len(keep),
        "gc_s": gc_s,
        "after_gc": after_gc,
        "status_pass_s": status_s,
        "status": ms(latencies),
    }


async def run_fill(spec: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    rss0 = rss_mib()
    async with open_plugin(spec, watch=True) as cni:
        full_started = time.perf_counter()
        waves = await fill(cni, spec, errors)
        fill_s = time.perf_counter() - full_started
        full = node_matches(spec, {f"{spec['prefix']}{i}" for i in range(spec["pods"])})
        closing = time.perf_counter()
    close_s = time.perf_counter() - closing
    opening = time.perf_counter()
    async with open_plugin(spec, watch=True) as cni:
        start_s = time.perf_counter() - opening
        record = await restart(cni, spec, errors)
        for i in range(0, spec["pods"], GC_EVERY):  # collected by GC: only the namespace is left
            churn.netns_del(f"{spec['prefix']}{i}")
        alive = [i for i in range(spec["pods"]) if i % GC_EVERY]
        drain_started = time.perf_counter()
        drained = await drain(cni, spec, alive, errors)
        drain_s = time.perf_counter() - drain_started
    fit = linear_fit([w["live_after"] for w in waves], [w["rss_mib"] for w in waves])
    return {
        "fill": {
            "waves": waves,
            "elapsed_s": fill_s,
            "rss_start_mib": rss0,
            "rss_kib_per_pod": fit[0] * 1024,
            "rss_fit_intercept_mib": fit[1],
            "full_node": full,
        },
        "restart": {"close_s": close_s, "start_s": start_s, **record},
        "drain": {"waves": drained, "elapsed_s": drain_s},
        "errors": errors,
        "leaks": churn.leaks(spec["prefix"], Path(spec["work"]), Path(spec["cache_dir"])),
    }


# -- 3: GC of stale entries ---------------------------------------------------------------------


def calls(bin_dir: Path, command: str) -> int:
    log = bin_dir.parent / "fake-calls.log"  # outside the bin dir, which a plugin may watch
    if not log.exists():
        return 0
    with log.open() as f:
        return sum(line.split(" ", 1)[0] == command for line in f)


async def write_stale(cni: CNIPlugin, count: int) -> None:
    """``count`` cache entries of the stale network, through the library's cache."""
    network = cni.config.get(STALE_NETWORK)
    assert network is not None, "the stale network did not load"
    result = parse_result(FAKE_RESULT, network.cni_version)

    async def write(i: int) -> None:
        cid = f"stale{i:06d}"
        args = (("K8S_POD_NAMESPACE", "stale"), ("K8S_POD_NAME", f"pod{i}"))
        rt = RuntimeConf(container_id=cid, netns="", ifname="eth0", args=args)
        await cni.engine.cache.write(cni.engine.cache_entry(network, rt, result))

    await for_each(count, write, limit=WRITERS)


async def stale_gc(spec: dict[str, Any], count: int) -> dict[str, Any]:
    bin_dir = Path(spec["bin_dirs"][0])
    cache_dir = Path(spec["work"]) / f"stale-cache-{count}"
    errors: list[str] = []
    async with open_plugin({**spec, "cache_dir": str(cache_dir)}) as cni:
        started = time.perf_counter()
        await write_stale(cni, count)
        write_s = time.perf_counter() - started
        say(f"stale {count}: entries written", 1, 1)
        tracemalloc.start()
        started = time.perf_counter()
        scanned = await cni.engine.get_cached_attachments()
        scan_s = time.perf_counter() - started
        scan_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        del scanned
        dels = calls(bin_dir, "DEL")
        rss0 = rss_mib()
        reset_peak_rss()
        started = time.perf_counter()
        try:
            await cni.gc([])
        except CNIError as exc:  # reported, and the entries left count as leaks
            errors.append(f"gc of {count} stale entries: {exc!r}")
        gc_s = time.perf_counter() - started
        peak = peak_rss_mib() - rss0
        say(f"stale {count}: gc", 1, 1)
    left = os.listdir(cache_dir / "results")
    return {
        "entries": count,
        "write_s": write_s,
        "scan_s": scan_s,
        "scan_traced_peak_mib": scan_peak,
        "gc_s": gc_s,
        "gc_ms_per_entry": gc_s * 1000 / count,
        "gc_peak_rss_above_start_mib": peak,
        "dels_run": calls(bin_dir, "DEL") - dels,
        "errors": errors,
        "leaks": [f"{len(left)} of {count} stale cache entries"] if left else [],
    }


async def run_stale(spec: dict[str, Any]) -> dict[str, Any]:
    runs = [await stale_gc(spec, count) for count in spec["sizes"]]
    return {
        "runs": runs,
        "errors": [e for r in runs for e in r["errors"]],
        "leaks": [leak for r in runs for leak in r["leaks"]],
    }


# -- 4: many files: start-up, reload, reload under churn ----------------------------------------


async def files_run(spec: dict[str, Any], count: int) -> dict[str, Any]:
    conf = Path(spec["work"]) / f"files-{count}"
    write_fakes(conf, count)
    one = {**spec, "conf_dir": str(conf), "cache_dir": str(Path(spec["work"]) / "files-cache")}
    bin_dir = Path(spec["bin_dirs"][0])
    starts: dict[str, list[float]] = {"watch": [], "no_watch": []}
    reloads: list[float] = []
    loaded = 0
    versions = calls(bin_dir, "VERSION")
    for _ in range(START_REPEATS):
        for key, watch in (("watch", True), ("no_watch", False)):
            started = time.perf_counter()
            async with open_plugin(one, watch=watch) as cni:
                starts[key].append(time.perf_counter() - started)
                loaded = len(cni.config.networks)
    versions = calls(bin_dir, "VERSION") - versions
    async with open_plugin(one) as cni:
        for _ in range(RELOAD_REPEATS):
            await timed(reloads, cni.reload())
    say(f"files {count}", 1, 1)
    return {
        "files": count,
        "networks_loaded": loaded,
        "start_watch_s": statistics.median(starts["watch"]),
        "start_no_watch_s": statistics.median(starts["no_watch"]),
        "reload_s": statistics.median(reloads),
        "reload_max_s": max(reloads),
        "version_execs_per_start": versions / (2 * START_REPEATS),
    }


def write_fakes(conf: Path, count: int) -> None:
    """``count`` network files of the fake plugin's type, after the bridge network's."""
    conf.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        body = {
            "cniVersion": "1.1.0",
            "name": f"fnet-{i:04d}",
            "plugins": [{"type": FAKE, "ipam": {"type": FAKE, "subnet": f"10.{i % 250}.0.0/24"}}],
        }
        (conf / f"50-fnet-{i:04d}.conflist").write_text(json.dumps(body))


async def churn_round(
    cni: CNIPlugin, spec: dict[str, Any], first: int, count: int
) -> dict[str, Any]:
    """``count`` pod cycles at CONCURRENCY: namespace, set-up, status, teardown, namespace."""
    prefix = spec["prefix"]
    latencies: list[float] = []
    errors: list[str] = []

    async def cycle(i: int) -> None:
        churn.netns_add(f"{prefix}{i}")
        pod = pod_for(prefix, i)
        try:
            await timed(latencies, cni.set_up_pod(pod))
            await cni.get_pod_network_status(pod)
            await cni.tear_down_pod(pod)
        except CNIError as exc:
            errors.append(f"pod {i}: {exc}")
            with contextlib.suppress(CNIError):
                await cni.tear_down_pod(pod)
        finally:
            churn.netns_del(f"{prefix}{i}")

    started = time.perf_counter()
    await for_each(count, lambda index: cycle(first + index), limit=CONCURRENCY)
    return {"elapsed_s": time.perf_counter() - started, "set_up": latencies, "errors": errors}


async def reload_churn(spec: dict[str, Any]) -> dict[str, Any]:
    """Churn rounds without reloads and with a reload every RELOAD_EVERY s: off, on, on, off."""
    write_fakes(Path(spec["conf_dir"]), spec["files"])
    rounds: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    reloads: list[float] = []
    size = max(1, spec["churn_pods"] // 2)

    async def reloader() -> None:
        while True:
            await anyio.sleep(RELOAD_EVERY)
            await timed(reloads, cni.reload())

    async with open_plugin(spec) as cni:
        for index, mode in enumerate(("without", "with", "with", "without")):
            async with anyio.create_task_group() as tg:
                if mode == "with":
                    tg.start_soon(reloader)
                rounds[mode].append(await churn_round(cni, spec, index * size, size))
                tg.cancel_scope.cancel()
            say("reload churn", (index + 1) * size, 4 * size)
    record: dict[str, Any] = {"pods_per_mode": 2 * size, "files": spec["files"] + 1}
    for mode, done in rounds.items():
        elapsed = sum(r["elapsed_s"] for r in done)
        record[mode] = {
            "elapsed_s": elapsed,
            "pods_per_s": 2 * size / elapsed,
            "set_up": ms([v for r in done for v in r["set_up"]]),
        }
    record["with"]["reloads"] = len(reloads)
    record["with"]["reload"] = ms(reloads)
    record["errors"] = [e for done in rounds.values() for r in done for e in r["errors"]]
    record["leaks"] = churn.leaks(spec["prefix"], Path(spec["work"]), Path(spec["cache_dir"]))
    return record


async def run_files(spec: dict[str, Any]) -> dict[str, Any]:
    runs = [await files_run(spec, count) for count in spec["sizes"]]
    return {"runs": runs, "errors": [], "leaks": []}


WORKERS: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "fill": run_fill,
    "stale": run_stale,
    "files": run_files,
    "reload_churn": reload_churn,
}


def worker(spec_json: str) -> None:
    churn._libc.prctl(churn._PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the driver
    spec = json.loads(spec_json)
    record = anyio.run(WORKERS[spec["mode"]], spec, backend=spec["backend"])
    Path(spec["result"]).write_text(json.dumps(record))


# -- analysis ---------------------------------------------------------------------------------


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line; (0, mean) for fewer than two points."""
    if len(set(xs)) < 2:
        return 0.0, statistics.fmean(ys) if ys else 0.0
    fit = statistics.linear_regression(xs, ys)
    return fit.slope, fit.intercept


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The slope of log y against log x: 1 is linear, 2 quadratic, 0 constant (``None`` with
    fewer than two sizes)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({p[0] for p in pairs}) < 2:
        return None
    return linear_fit([p[0] for p in pairs], [p[1] for p in pairs])[0]


def latency_trend(waves: list[dict[str, Any]], key: str) -> dict[str, float]:
    """How a wave's p50 moves with the live pods: the fitted change from the fewest to the most
    live pods, in percent of the fitted value at the fewest."""
    xs = [float(w[key]) for w in waves]
    ys = [w["p50_ms"] for w in waves]
    slope, intercept = linear_fit(xs, ys)
    low, high = min(xs, default=0.0), max(xs, default=0.0)
    base = slope * low + intercept
    change = (slope * (high - low)) / base * 100 if base > 0 else 0.0
    return {"ms_per_100_live_pods": slope * 100, "fitted_change_pct": change}


def growth(report: dict[str, Any]) -> dict[str, Any]:
    """What grows with the size of the node, and whether worse than linearly."""
    fill, drain = report["fill"]["waves"], report["drain"]["waves"]
    stale, files = report["stale_gc"]["runs"], report["files"]["runs"]
    out: dict[str, Any] = {
        "set_up_vs_live_pods": latency_trend(fill, "live_before"),
        "teardown_vs_live_pods": latency_trend(drain, "live_before"),
        "gc_time_vs_entries_exponent": exponent(
            [r["entries"] for r in stale], [r["gc_s"] for r in stale]
        ),
        "scan_time_vs_entries_exponent": exponent(
            [r["entries"] for r in stale], [r["scan_s"] for r in stale]
        ),
        "start_vs_files_exponent": exponent(
            [r["files"] for r in files], [r["start_no_watch_s"] for r in files]
        ),
        "reload_vs_files_exponent": exponent(
            [r["files"] for r in files], [r["reload_s"] for r in files]
        ),
    }
    # A per-pod cost that grows with the live pods makes the total superlinear.
    worse = [
        f"{key}: {out[key]['fitted_change_pct']:+.0f} % over the range"
        for key in ("set_up_vs_live_pods", "teardown_vs_live_pods")
        if out[key]["fitted_change_pct"] > 25
    ]
    worse += [
        f"{k}: {v:.2f}" for k, v in out.items() if k.endswith("_exponent") and (v or 0) > 1.15
    ]
    out["worse_than_linear"] = worse
    return out


# -- the driver -------------------------------------------------------------------------------


def run_worker(node: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in the node namespace, showing its progress; its record."""
    result = Path(spec["work"]) / f"result-{spec['mode']}.json"
    spec = {**spec, "result": str(result)}
    started = time.perf_counter()
    proc = churn.start_worker(node, str(Path(__file__).resolve()), spec)
    assert proc.stderr is not None
    other: list[str] = []
    shown = ""
    try:
        for line in proc.stderr:
            if not line.startswith("progress "):
                other.append(line)
                continue
            done, total, label = line.rstrip("\n").split(" ", 3)[1:]
            if shown and label != shown:
                sys.stderr.write("\n")
            shown = label
            churn.progress(label, int(done), int(total))
    except BaseException:  # SIGTERM or ^C: stop the worker before the caller cleans up
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if shown:
        sys.stderr.write("\n")
    if proc.wait() != 0:
        sys.stderr.write("".join(other))
        raise SystemExit(f"the {spec['mode']} worker failed")
    record: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    record["elapsed_s"] = time.perf_counter() - started
    return record


def write_bridge_config(conf: Path, bridge: str, ipam: Path) -> None:
    conf.mkdir(parents=True, exist_ok=True)
    body = {
        "cniVersion": "1.0.0",  # Debian's plugins (1.1.1) know no later version
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": str(ipam)},
            }
        ],
    }
    (conf / f"00-{NETWORK}.conflist").write_text(json.dumps(body))


def write_fake_plugin(work: Path) -> Path:
    """The fake plugin (a shell script) and the stale network's configuration."""
    bin_dir = work / "fake-bin"
    bin_dir.mkdir()
    plugin = bin_dir / FAKE
    plugin.write_text(FAKE_PLUGIN)
    plugin.chmod(0o755)
    conf = work / "stale-conf"
    conf.mkdir()
    body = {"cniVersion": "1.1.0", "name": STALE_NETWORK, "plugins": [{"type": FAKE}]}
    (conf / f"10-{STALE_NETWORK}.conflist").write_text(json.dumps(body))
    return bin_dir


def sizes(total: int, parts: Sequence[int]) -> list[int]:
    return sorted({max(1, total // p) for p in parts})


def run_all(options: argparse.Namespace, prefix: str, node: str, work: Path) -> dict[str, Any]:
    """Every measurement in turn, in the node namespace: their records, by section."""
    bridge = churn.bridge_name(prefix, 0)
    churn.make_bridges(node, "A", prefix)  # bridge 0 of configuration A, with its pinned MAC
    conf = work / "conf"
    write_bridge_config(conf, bridge, work / "ipam")
    fake_bin = write_fake_plugin(work)
    common = {"work": str(work), "backend": options.backend, "bridge": bridge}
    pods = {**common, "conf_dir": str(conf), "bin_dirs": [churn.CNI_BIN]}
    report: dict[str, Any] = {}
    report["fill"] = run_worker(
        node,
        {
            **pods,
            "mode": "fill",
            "pods": options.pods,
            "prefix": f"{prefix}-p",
            "cache_dir": str(work / "cache-fill"),
        },
    )
    fakes = {**common, "bin_dirs": [str(fake_bin)]}
    report["stale"] = run_worker(
        node,
        {
            **fakes,
            "mode": "stale",
            "conf_dir": str(work / "stale-conf"),
            "sizes": sizes(options.stale, (10, 3, 1)),
        },
    )
    report["files"] = run_worker(
        node, {**fakes, "mode": "files", "sizes": sizes(options.files, (8, 4, 2, 1))}
    )
    churn_conf = work / "churn-conf"
    write_bridge_config(churn_conf, bridge, work / "ipam")
    report["reload_churn"] = run_worker(
        node,
        {
            **common,
            "mode": "reload_churn",
            "conf_dir": str(churn_conf),
            "bin_dirs": [churn.CNI_BIN, str(fake_bin)],
            "prefix": f"{prefix}-c",
            "cache_dir": str(work / "cache-churn"),
            "files": options.files,
            "churn_pods": options.churn_pods,
        },
    )
    report["moved_bridges"] = churn.moved_bridges(node, "A", prefix)
    return report


def left_behind(prefix: str) -> list[str]:
    """Namespaces and host links with the run's prefix still there after the clean-up."""
    found = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    links = subprocess.run(
        ["ip", "-o", "link", "show"], check=False, capture_output=True, text=True
    ).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if f": {prefix}" in line]
    return [f"left after the clean-up: {', '.join(found)}"] if found else []


def machine() -> dict[str, Any]:
    plugins = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "plugins": plugins or "unknown",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=500, help="pods alive at once (default 500)")
    parser.add_argument("--stale", type=int, default=10_000, help="stale cache entries for GC")
    parser.add_argument("--files", type=int, default=200, help="network files for start-up")
    parser.add_argument("--churn-pods", type=int, default=100, help="pods of the reload churn")
    parser.add_argument("--json", dest="json_path", default="scale.json")
    parser.add_argument("--plot", dest="plot_path", default="scale.png")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.worker)
        return 0
    if not 1 <= options.pods <= MAX_PODS:
        raise SystemExit(f"--pods must be 1 to {MAX_PODS}: a bridge takes at most 1024 ports")
    if min(options.stale, options.files, options.churn_pods) < 1:
        raise SystemExit("--stale, --files and --churn-pods must be at least 1")
    if os.geteuid() != 0:
        raise SystemExit("run this as root: it creates network namespaces")
    prefix = "scl" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    node = f"{prefix}-node"
    churn.exit_on_sigterm()
    started = time.perf_counter()
    subprocess.run(["ip", "netns", "add", node], check=True)
    try:
        subprocess.run(["ip", "-n", node, "link", "set", "lo", "up"], check=True)
        report = run_all(options, prefix, node, work)
    finally:
        churn.remove_node(prefix, node, work)
    report = summarise(report, options, prefix, time.perf_counter() - started)
    print()
    print(markdown(report))
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {options.json_path}")
    if options.plot_path:
        plot(report, options.plot_path)
    return 1 if report["leaks"] or report["errors"] else 0


def summarise(
    report: dict[str, Any], options: argparse.Namespace, prefix: str, elapsed: float
) -> dict[str, Any]:
    """The report: every section at the top level, what grows, every error and leak."""
    workers = {"fill, restart, drain": "fill", "stale gc": "stale", "files": "files"}
    workers["reload churn"] = "reload_churn"
    pods = report["fill"]
    leaks = [f"{w}: {leak}" for w, key in workers.items() for leak in report[key]["leaks"]]
    leaks += [f"fill (full node): {p}" for p in pods["fill"]["full_node"]["problems"]]
    leaks += [f"restart (after gc): {p}" for p in pods["restart"]["after_gc"]["problems"]]
    leaks += report["moved_bridges"] + left_behind(prefix)
    out = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "options": {
            "pods": options.pods,
            "stale": options.stale,
            "files": options.files,
            "churn_pods": options.churn_pods,
            "backend": options.backend,
            "concurrency": CONCURRENCY,
            "wave": STEP,
        },
        "elapsed_s": elapsed,
        "fill": pods["fill"],
        "restart": pods["restart"],
        "drain": pods["drain"],
        "stale_gc": {"runs": report["stale"]["runs"]},
        "files": {"runs": report["files"]["runs"]},
        "reload_churn": {
            k: v for k, v in report["reload_churn"].items() if k not in ("errors", "leaks")
        },
        "worker_elapsed_s": {w: report[key]["elapsed_s"] for w, key in workers.items()},
        "errors": [f"{w}: {e}" for w, key in workers.items() for e in report[key]["errors"]],
        "leaks": leaks,
    }
    out["growth"] = growth(out)
    return out


# -- output -----------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    parts = [
        *markdown_pods(report),
        markdown_restart(report["restart"]),
        markdown_stale(report["stale_gc"]["runs"]),
        markdown_files(report["files"]["runs"]),
        markdown_churn(report["reload_churn"]),
        markdown_growth(report["growth"]),
        f"errors: {len(report['errors'])}; leaks: {', '.join(report['leaks']) or 'none'}",
        f"elapsed: {report['elapsed_s']:.0f} s ("
        + ", ".join(f"{w} {t:.0f} s" for w, t in report["worker_elapsed_s"].items())
        + ")",
    ]
    return "\n\n".join(parts)


COST_COLUMNS = ("CPU ms/pod", "plugin CPU ms/pod", "RSS MiB")


def wave_rows(waves: list[dict[str, Any]], key: str) -> list[tuple[object, ...]]:
    return [
        (
            w[key],
            f"{w['p50_ms']:.1f}",
            f"{w['p99_ms']:.1f}",
            f"{w['cpu_ms_per_pod']:.1f}",
            f"{w['plugin_cpu_ms_per_pod']:.1f}",
            f"{w['rss_mib']:.1f}",
        )
        for w in waves
    ]


def markdown_pods(report: dict[str, Any]) -> list[str]:
    fill, drain = report["fill"], report["drain"]
    pods = sum(int(w["count"]) for w in drain["waves"])
    return [
        (
            f"Fill: {report['options']['pods']} pods in {fill['elapsed_s']:.1f} s, waves of {STEP} "
            f"at concurrency {CONCURRENCY}; RSS {fill['rss_kib_per_pod']:.1f} KiB per live pod "
            "(linear fit)"
        ),
        table(
            ["live pods (wave end)", "set-up p50 ms", "set-up p99 ms", *COST_COLUMNS],
            wave_rows(fill["waves"], "live_after"),
        ),
        f"Drain (after the restart and GC): {pods} pods in {drain['elapsed_s']:.1f} s",
        table(
            ["live pods (wave start)", "teardown p50 ms", "teardown p99 ms", *COST_COLUMNS],
            wave_rows(drain["waves"], "live_before"),
        ),
    ]


def markdown_restart(restart: dict[str, Any]) -> str:
    header = ["close s", "start s", "gc s (pods collected)", "status pass s (pods)"]
    header += ["status p50/p99 ms", "leases / entries / veths after gc"]
    row = (
        f"{restart['close_s']:.3f}",
        f"{restart['start_s']:.3f}",
        f"{restart['gc_s']:.2f} ({restart['collected_pods']})",
        f"{restart['status_pass_s']:.2f} ({restart['valid_pods']})",
        f"{restart['status']['p50_ms']:.1f} / {restart['status']['p99_ms']:.1f}",
        "{leases} / {cache_entries} / {bridge_veths}".format(**restart["after_gc"]),
    )
    return "Restart with the node full\n\n" + table(header, [row])


def markdown_stale(runs: list[dict[str, Any]]) -> str:
    header = ["entries", "write s", "scan s", "scan traced peak MiB", "gc s", "gc ms/entry"]
    header += ["gc peak RSS +MiB", "DELs run"]
    rows = [
        (
            r["entries"],
            f"{r['write_s']:.2f}",
            f"{r['scan_s']:.3f}",
            f"{r['scan_traced_peak_mib']:.1f}",
            f"{r['gc_s']:.2f}",
            f"{r['gc_ms_per_entry']:.2f}",
            f"{r['gc_peak_rss_above_start_mib']:.1f}",
            r["dels_run"],
        )
        for r in runs
    ]
    return "GC of stale cache entries (fake plugin, no netns)\n\n" + table(header, rows)


def markdown_files(runs: list[dict[str, Any]]) -> str:
    header = ["files", "networks", "start (watch) ms", "start (no watch) ms", "reload ms"]
    header += ["VERSION execs per start"]
    rows = [
        (
            r["files"],
            r["networks_loaded"],
            f"{r['start_watch_s'] * 1000:.1f}",
            f"{r['start_no_watch_s'] * 1000:.1f}",
            f"{r['reload_s'] * 1000:.1f}",
            f"{r['version_execs_per_start']:.0f}",
        )
        for r in runs
    ]
    title = "Start-up and reload with many network files (medians)"
    return title + "\n\n" + table(header, rows)


def markdown_churn(record: dict[str, Any]) -> str:
    rows = []
    for mode in ("without", "with"):
        r = record[mode]
        reload = r.get("reload")
        rows.append(
            (
                f"{mode} reloads",
                f"{r['pods_per_s']:.1f}",
                f"{r['set_up']['p50_ms']:.1f} / {r['set_up']['p99_ms']:.1f}",
                r.get("reloads", 0),
                f"{reload['p50_ms']:.1f} / {reload['p99_ms']:.1f}" if reload else "-",
            )
        )
    title = (
        f"Reload under churn: {record['pods_per_mode']} pods per mode at concurrency "
        f"{CONCURRENCY}, {record['files']} network files, a reload every {RELOAD_EVERY} s"
    )
    header = ["", "pods/s", "set-up p50/p99 ms", "reloads", "reload p50/p99 ms"]
    return title + "\n\n" + table(header, rows)


def trend_text(trend: dict[str, float]) -> str:
    return (
        f"{trend['ms_per_100_live_pods']:+.2f} ms per 100 pods, "
        f"{trend['fitted_change_pct']:+.0f} % over the range"
    )


def markdown_growth(found: dict[str, Any]) -> str:
    rows = [
        (f"{what} p50 vs live pods", trend_text(found[f"{key}_vs_live_pods"]))
        for what, key in (("set-up", "set_up"), ("teardown", "teardown"))
    ]
    rows += [
        (
            key.replace("_exponent", "").replace("_", " "),
            "-" if value is None else f"exponent {value:.2f}",
        )
        for key, value in found.items()
        if key.endswith("_exponent")
    ]
    worse = "; ".join(found["worse_than_linear"]) or "nothing"
    return (
        "Growth (exponent: slope of log time against log size; 1 is linear)\n\n"
        + table(["what", "growth"], rows)
        + f"\n\nworse than linear: {worse}"
    )


def plot(report: dict[str, Any], path: str) -> None:
    """Latency and RSS against live pods; GC time against entries; start-up against files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        print(f"(no plot: matplotlib is not installed; {path} not written)", file=sys.stderr)
        return
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 200, not 2 x 10^2
    with plt.rc_context({"font.size": 10, "lines.linewidth": 1.8, "lines.markersize": 5}):
        fig, axes = plt.subplots(2, 2, figsize=(9.6, 7.2), layout="constrained")
        plot_latency(axes[0][0], report)
        plot_rss(axes[0][1], report)
        plot_stale(axes[1][0], report["stale_gc"]["runs"])
        plot_files(axes[1][1], report["files"]["runs"])
        for ax in axes.flat:
            if ax.get_yscale() == "log":  # plain numbers at 1, 2 and 5 times each power of ten
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            for axis in (ax.xaxis, ax.yaxis):
                if axis.get_scale() == "log":
                    axis.set_major_formatter(plain)
                    axis.set_minor_formatter(NullFormatter())
            ax.grid(True, alpha=0.35)
            ax.legend(frameon=False, fontsize=8.5)
        fig.savefig(path, dpi=130, facecolor="white")
        plt.close(fig)
    print(f"plot written to {path}")


def plot_latency(ax: Axes, report: dict[str, Any]) -> None:
    for waves, name, color in (
        (report["fill"]["waves"], "set-up", "C0"),
        (report["drain"]["waves"], "teardown", "C1"),
    ):
        xs = [w["live_before"] for w in waves]
        ax.plot(xs, [w["p50_ms"] for w in waves], "o-", color=color, label=f"{name} p50")
        ax.plot(xs, [w["p99_ms"] for w in waves], "x--", color=color, label=f"{name} p99")
    ax.set(xlabel="live pods (wave start)", ylabel="ms", title=f"Latency per wave of {STEP}")


def plot_rss(ax: Axes, report: dict[str, Any]) -> None:
    fill, drain = report["fill"], report["drain"]
    xs = [w["live_after"] for w in fill["waves"]]
    ax.plot(xs, [w["rss_mib"] for w in fill["waves"]], "o-", label="filling")
    slope, intercept = fill["rss_kib_per_pod"] / 1024, fill["rss_fit_intercept_mib"]
    ax.plot(xs, [slope * x + intercept for x in xs], ":", color="0.4", label="linear fit")
    dx = [w["live_after"] for w in drain["waves"]]
    ax.plot(dx, [w["rss_mib"] for w in drain["waves"]], "x--", label="draining (restarted)")
    ax.set(xlabel="live pods", ylabel="MiB", title=f"RSS ({slope * 1024:.1f} KiB per pod)")


def plot_stale(ax: Axes, runs: list[dict[str, Any]]) -> None:
    es = [r["entries"] for r in runs]
    ax.plot(es, [r["gc_s"] for r in runs], "o-", label="gc([])")
    ax.plot(es, [r["scan_s"] for r in runs], "x--", label="cache scan")
    ax.set(xscale="log", yscale="log", xlabel="stale entries", ylabel="s", title="GC")
    ax.set_xticks(es, [str(e) for e in es])


def plot_files(ax: Axes, runs: list[dict[str, Any]]) -> None:
    fs = [r["files"] for r in runs]
    ax.plot(fs, [r["start_watch_s"] * 1000 for r in runs], "o-", label="start (watch)")
    ax.plot(fs, [r["start_no_watch_s"] * 1000 for r in runs], "s-", label="start (no watch)")
    ax.plot(fs, [r["reload_s"] * 1000 for r in runs], "x--", label="reload()")
    ax.set(xscale="log", yscale="log", xlabel="network files", ylabel="ms", title="Files")
    ax.set_xticks(fs, [str(f) for f in fs])


if __name__ == "__main__":
    sys.exit(main())
