"""Expose the library's metrics to Prometheus.

Needs the ``prometheus`` extra: ``pip install 'cni_async[prometheus]'``. ``Metrics`` counts in
memory; ``PrometheusCollector`` turns its snapshot into metric families at each scrape. Here
the exposition is printed once; a runtime would serve its registry instead, with
``prometheus_client.start_http_server(port, registry=registry)`` or its own HTTP server.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python prometheus.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio
from prometheus_client import CollectorRegistry, generate_latest

from cni_async import CNIPlugin, Metrics, PodNetwork, PrometheusCollector


async def main(
    conf_dir: str, bin_dirs: Sequence[str], netns: str, cache_dir: str | None = None
) -> str:
    metrics = Metrics()
    registry = CollectorRegistry()  # or prometheus_client.REGISTRY, the default one
    registry.register(PrometheusCollector(metrics))
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir, observers=[metrics]) as cni:
        pod = PodNetwork(name="web", namespace="default", id="4f1c0a9e7b2d", uid="", netns=netns)
        with anyio.fail_after(60):
            await cni.set_up_pod(pod)
            await cni.tear_down_pod(pod)

    exposition = generate_latest(registry).decode()  # what a scrape of the registry returns
    for line in exposition.splitlines():
        if line.startswith(("cni_async_operation_duration_seconds_count", "cni_async_plugin")):
            print(line)
    return exposition


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
    )
