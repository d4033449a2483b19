"""Soak: thousands of pod cycles on real plugins while the configuration keeps changing.

``--cycles`` pods (default 10 000) go through create netns, ``set_up_pod``,
``get_pod_network_status``, ``tear_down_pod``, delete netns at ``--concurrency`` at once, on
configuration A (bridge + host-local + portmap), with ``watch=True``; meanwhile another task
rewrites the network's file and adds and removes a second network every ``--reload-every``
seconds. It reports failed operations (target 0), reloads, and file descriptors, memory, tasks
and threads at the start and at the end (target: flat), and checks that nothing leaked.

    python benchmarks/soak.py [--cycles N] [--concurrency C] [--reload-every S] [--json PATH]

Run as root; everything runs inside a node namespace of its own, as in churn.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from churn import (
    exit_on_sigterm,
    leaks,
    netns_add,
    netns_del,
    remove_node,
    worker_command,
    write_configs,
)


def sample() -> dict[str, float]:
    """File descriptors, memory, live Python objects, tasks and threads, right now."""
    import anyio

    gc.collect()
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_mib": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
        "python_objects": len(gc.get_objects()),
        "tasks": len(anyio.get_running_tasks()),
        "threads": threading.active_count(),
    }


async def soak(spec: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from cni_async import CNIError, CNIPlugin, PodNetwork

    conf, prefix, work = Path(spec["conf_dir"]), spec["prefix"], Path(spec["work"])
    cache_dir = work / "cache-soak"
    failures: list[str] = []
    done = 0
    [main_file] = list(conf.glob("*.conflist"))
    original = json.loads(main_file.read_text())
    async with CNIPlugin(str(conf), spec["bin_dirs"], str(cache_dir), debounce=0.05) as cni:

        async def churn_config() -> None:
            i = 0
            while True:
                i += 1
                body = dict(original, soakGeneration=i)  # an unknown key: same network
                tmp = conf / ".edit.tmp"
                tmp.write_text(json.dumps(body))
                os.replace(tmp, main_file)
                extra = conf / "90-extra.conflist"
                if i % 2:
                    extra.write_text(json.dumps(dict(original, name="extra")))
                else:
                    extra.unlink(missing_ok=True)
                await anyio.sleep(spec["reload_every"])

        async def cycle(i: int) -> None:
            nonlocal done
            name = f"{prefix}-p{i}"
            path = netns_add(name)
            pod = PodNetwork(f"pod{i}", "soak", name, f"uid{i}", path)
            try:
                with anyio.fail_after(120):
                    await cni.set_up_pod(pod)
                    await cni.get_pod_network_status(pod)
                    await cni.tear_down_pod(pod)
            except (CNIError, TimeoutError) as exc:
                failures.append(f"pod {i}: {exc!r}")
                with anyio.CancelScope(shield=True), anyio.move_on_after(60):
                    try:
                        await cni.tear_down_pod(pod)
                    except CNIError as again:
                        failures.append(f"pod {i} cleanup: {again!r}")
            finally:
                netns_del(name)
                done += 1
                if done % 250 == 0:
                    print(f"{done}/{spec['cycles']} cycles", file=sys.stderr, flush=True)

        started = time.perf_counter()
        warmup = min(500, spec["cycles"] // 10)

        async def pods(first: int, last: int) -> None:
            """``concurrency`` workers take the cycles one by one, as a runtime's request
            handlers would. (Spawning every cycle's task up front, waiting on a semaphore, made
            pymalloc's arenas grow with the number of waiting tasks: the harness, not a leak.)"""
            queue = iter(range(first, last))

            async def worker() -> None:
                for i in queue:
                    await cycle(i)

            async with anyio.create_task_group() as workers:
                for _ in range(spec["concurrency"]):
                    workers.start_soon(worker)

        async with anyio.create_task_group() as tg:
            tg.start_soon(churn_config)
            # "start" is measured after a warm-up: imports, thread pool and allocator arenas
            # reach their working size first, so a difference at the end means a leak.
            await pods(0, warmup)
            start = sample()
            await pods(warmup, spec["cycles"])
            tg.cancel_scope.cancel()  # the configuration churn: it may be asleep for long
        elapsed = time.perf_counter() - started
        main_file.write_text(json.dumps(original))
        (conf / "90-extra.conflist").unlink(missing_ok=True)
        await anyio.sleep(0.5)
        end = sample()
        reloads = cni.watcher.reloads if cni.watcher else 0
    return {
        "cycles": spec["cycles"],
        "concurrency": spec["concurrency"],
        "elapsed_s": elapsed,
        "pods_per_s": spec["cycles"] / elapsed,
        "failed_operations": failures,
        "reloads": reloads,
        "warmup": warmup,
        "start": start,
        "end": end,
        "leaks": leaks(f"{prefix}-p", work, cache_dir),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reload-every", type=float, default=0.5)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        import anyio

        print(json.dumps(anyio.run(soak, json.loads(options.worker))))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run this as root: it creates network namespaces")
    prefix = "cns" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    node = f"{prefix}-node"
    exit_on_sigterm()
    subprocess.run(["ip", "netns", "add", node], check=True)
    try:
        subprocess.run(["ip", "-n", node, "link", "set", "lo", "up"], check=True)
        conf, bin_dirs, _ = write_configs("A", work, prefix)
        spec = {
            "conf_dir": str(conf),
            "bin_dirs": bin_dirs,
            "prefix": prefix,
            "work": str(work),
            "cycles": options.cycles,
            "concurrency": options.concurrency,
            "reload_every": options.reload_every,
        }
        out = subprocess.run(
            worker_command(node, str(Path(__file__).resolve()), spec),
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
    finally:
        remove_node(f"{prefix}-", node, work)
    report = json.loads(out.stdout)
    start, end = report["start"], report["end"]
    print(
        f"\n{report['cycles']} pod cycles at concurrency {report['concurrency']} in "
        f"{report['elapsed_s']:.0f} s ({report['pods_per_s']:.1f} pods/s), "
        f"{report['reloads']} config reloads meanwhile\n"
    )
    print(f"(start: after a warm-up of {report['warmup']} cycles)\n")
    print("| | start | end |\n|---|---:|---:|")
    for key in ("fds", "rss_mib", "python_objects", "tasks", "threads"):
        print(f"| {key} | {start[key]:.1f} | {end[key]:.1f} |")
    print(f"\nfailed operations: {len(report['failed_operations'])}")
    for failure in report["failed_operations"][:20]:
        print(f"  {failure}")
    print(f"leaks: {', '.join(report['leaks']) or 'none'}")
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["failed_operations"] or report["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
