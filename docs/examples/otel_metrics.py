"""Export the library's metrics with OpenTelemetry: durations, errors, reloads.

Needs the ``otel`` extra and an SDK: ``pip install 'cni_async[otel]' opentelemetry-sdk``.
Metrics go to the console here, once at the end; a runtime would give its ``MeterProvider`` a
``PeriodicExportingMetricReader`` with an OTLP exporter instead (or use the global provider,
which ``OpenTelemetryMetrics()`` does when given none).

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python otel_metrics.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)

from cni_async import CNIPlugin, OpenTelemetryMetrics, PodNetwork


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    exporter: MetricExporter | None = None,
) -> None:
    reader = PeriodicExportingMetricReader(
        exporter or ConsoleMetricExporter(), export_interval_millis=60_000
    )
    provider = MeterProvider(metric_readers=[reader])
    observer = OpenTelemetryMetrics(meter_provider=provider)
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir, observers=[observer]) as cni:
        pod = PodNetwork(name="web", namespace="default", id="4f1c0a9e7b2d", uid="", netns=netns)
        with anyio.fail_after(60):
            await cni.set_up_pod(pod)  # cni.operation.duration{cni.operation=set_up_pod}
            await cni.status()  # cni.plugin.duration{cni.command=STATUS, cni.plugin=...}
            await cni.tear_down_pod(pod)
    provider.shutdown()  # exports what was recorded one last time


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
    )
