"""Count and time what the library does, and export it as JSON.

``Metrics`` is an observer: hand it to ``CNIPlugin`` and read ``snapshot()`` whenever your
exporter scrapes (from any thread). It keeps operation and plugin-run latencies in buckets,
failures by CNI error code, the operations in flight, reloads and rollbacks.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python metrics.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio
import msgspec

from cni_async import CNIPlugin, Metrics, MetricsSnapshot, PodNetwork


async def main(
    conf_dir: str, bin_dirs: Sequence[str], netns: str, cache_dir: str | None = None
) -> MetricsSnapshot:
    metrics = Metrics()
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir, observers=[metrics]) as cni:
        pod = PodNetwork(name="web", namespace="default", id="4f1c0a9e7b2d", uid="", netns=netns)
        with anyio.fail_after(60):
            await cni.set_up_pod(pod)
            await cni.get_pod_network_status(pod)
            await cni.tear_down_pod(pod)

    snapshot = metrics.snapshot()
    for op in snapshot.operations:
        mean_ms = op.latency.sum_s / op.latency.count * 1000
        print(f"{op.kind:<24} {op.count} calls, {op.failed} failed, mean {mean_ms:.1f} ms")
    for run in snapshot.plugin_runs:
        print(f"{run.verb:<8} {run.plugin:<16} {run.count} runs, {run.failed} failed")
    print(msgspec.json.encode(snapshot).decode()[:200], "...")  # what an exporter would ship
    return snapshot


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
    )
