"""A real demonstration of the protocol engine on Debian's CNI plugins.

For each of ``--pods`` pods, at ``--concurrency`` at once: create a network namespace, ADD the
``loopback`` plugin and a bridge + host-local network, CHECK it, DEL both, and remove the
namespace. Prints the time per phase and checks that nothing leaked (namespaces, veths, IP
leases, cache entries). Everything is made under a unique prefix and removed at the end, and no
address is put outside the pods' own namespaces (the bridge gets none).

Run as root: ``python benchmarks/engine_demo.py [--pods N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import anyio

from cni_async._config import parse_conflist
from cni_async._engine import CNIEngine, RuntimeConf
from cni_async._results import Result100, convert_result

CNI_BIN = "/usr/lib/cni"


async def ip(*args: str) -> str:
    result = await anyio.run_process(["ip", *args])
    return result.stdout.decode()


async def main(pods: int, concurrency: int) -> int:
    prefix = "cnd" + secrets.token_hex(3)
    work = tempfile.mkdtemp(prefix=f"{prefix}-")
    engine = CNIEngine([CNI_BIN], cache_dir=os.path.join(work, "cache"))
    bridge = parse_conflist(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": f"{prefix}-net",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": f"{prefix}br",
                        "ipam": {
                            "type": "host-local",
                            "subnet": "10.231.0.0/16",
                            "dataDir": os.path.join(work, "ipam"),
                        },
                    }
                ],
            }
        ).encode()
    )
    loopback = parse_conflist(b'{"cniVersion":"1.0.0","name":"lo","plugins":[{"type":"loopback"}]}')
    timings: dict[str, list[float]] = defaultdict(list)
    addresses: dict[str, str] = {}
    limiter = anyio.Semaphore(concurrency)

    async def pod(i: int) -> None:
        async with limiter:
            name = f"{prefix}-{i}"
            pod_rt = RuntimeConf(container_id=name, netns=f"/run/netns/{name}", ifname="eth0")
            lo_rt = RuntimeConf(container_id=name, netns=pod_rt.netns, ifname="lo")
            t0 = time.perf_counter()
            await ip("netns", "add", name)
            try:
                t1 = time.perf_counter()
                await engine.add_network_list(loopback, lo_rt)
                result = convert_result(await engine.add_network_list(bridge, pod_rt), "1.1.0")
                assert isinstance(result, Result100)
                addresses[name] = result.ips[0].address
                t2 = time.perf_counter()
                await engine.check_network_list(bridge, pod_rt)
                t3 = time.perf_counter()
                await engine.del_network_list(bridge, pod_rt)
                await engine.del_network_list(loopback, lo_rt)
                t4 = time.perf_counter()
            except BaseException:
                # The SPEC wants a DEL after a failed ADD; run it even if we are cancelled.
                with anyio.move_on_after(30, shield=True):
                    await engine.del_network_list(bridge, pod_rt)
                    await engine.del_network_list(loopback, lo_rt)
                raise
            finally:
                with anyio.move_on_after(30, shield=True):
                    await ip("netns", "del", name)
            timings["netns add"].append(t1 - t0)
            timings["ADD (lo + bridge)"].append(t2 - t1)
            timings["CHECK"].append(t3 - t2)
            timings["DEL (bridge + lo)"].append(t4 - t3)
            timings["netns del"].append(time.perf_counter() - t4)

    # A bridge with a fixed MAC: otherwise Linux gives it the lowest MAC of its ports, which
    # changes as pods come and go, and the bridge plugin's CHECK reports the drift.
    await ip("link", "add", f"{prefix}br", "address", "02:00:0a:e7:00:01", "type", "bridge")
    started = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(pods):
                tg.start_soon(pod, i)
        elapsed = time.perf_counter() - started
        leaks = []
        if [n for n in (await ip("netns", "list")).split() if n.startswith(prefix)]:
            leaks.append("network namespaces")
        if json.loads(await ip("-j", "link", "show", "master", f"{prefix}br") or "[]"):
            leaks.append("veths")
        lease_dir = os.path.join(work, "ipam", f"{prefix}-net")
        if [f for f in os.listdir(lease_dir) if f[0].isdigit()]:
            leaks.append("IP leases")
        if await engine.get_cached_attachments():
            leaks.append("cache entries")
    finally:
        await anyio.run_process(["ip", "link", "del", f"{prefix}br"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{pods} pods at concurrency {concurrency}: {elapsed:.2f} s, {pods / elapsed:.1f} pods/s"
    )
    print(f"distinct pod addresses: {len(set(addresses.values()))} of {pods}\n")
    print("| phase | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for phase, values in timings.items():
        values.sort()
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(
            f"| {phase} | {statistics.median(values) * 1000:.1f} | {p95 * 1000:.1f} | "
            f"{values[-1] * 1000:.1f} |"
        )
    print(f"\nleaks: {', '.join(leaks) if leaks else 'none'}")
    return 1 if leaks or len(set(addresses.values())) != pods else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run this as root: it creates network namespaces")
    sys.exit(anyio.run(main, options.pods, options.concurrency))
