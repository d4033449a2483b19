"""Trace a pod's set-up with OpenTelemetry, down to each plugin process.

Needs the ``otel`` extra and an SDK: ``pip install 'cni_async[otel]' opentelemetry-sdk``.
Spans go to the console here; a runtime would configure its OTLP exporter instead. Each plugin
process gets the trace context of its own span as ``TRACEPARENT``, so a plugin that traces can
continue the trace.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python tracing.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from cni_async import CNIPlugin, OpenTelemetryObserver, PodNetwork


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    exporter: SpanExporter | None = None,
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter or ConsoleSpanExporter()))
    tracer = provider.get_tracer("my-runtime")
    observer = OpenTelemetryObserver(tracer_provider=provider)
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir, observers=[observer]) as cni:
        pod = PodNetwork(name="web", namespace="default", id="4f1c0a9e7b2d", uid="", netns=netns)
        # The runtime's own span: "cni set_up_pod" nests under it, "cni ADD <plugin>" under that.
        with tracer.start_as_current_span("RunPodSandbox"):
            with anyio.fail_after(60):
                await cni.set_up_pod(pod)
        with tracer.start_as_current_span("StopPodSandbox"):
            with anyio.fail_after(60):
                await cni.tear_down_pod(pod)
    provider.shutdown()


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
    )
