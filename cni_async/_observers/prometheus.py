"""Prometheus: a ``prometheus_client`` collector that exposes a [`Metrics`][cni_async.Metrics]
snapshot.

Needs the ``prometheus`` extra (``pip install 'cni_async[prometheus]'``, which brings
``prometheus-client``); the application registers the collector and serves the registry as
usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .metrics import Histogram, Metrics, MetricsSnapshot

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
else:  # the base class only matters to type checkers; prometheus_client is imported lazily
    Collector = object

__all__ = ["PrometheusCollector"]

_EMPTY = MetricsSnapshot(
    operations=(),
    plugin_runs=(),
    errors=(),
    in_flight=0,
    reloads=0,
    networks=0,
    invalid_files=0,
    rollbacks=0,
    rollback_failures=0,
)


class PrometheusCollector(Collector):
    """A ``prometheus_client`` collector of a [`Metrics`][cni_async.Metrics] observer's counts.

    Each scrape takes one [`Metrics.snapshot()`][cni_async.Metrics.snapshot] and yields it as metric
    families, so the observer stays the only thing on the hot path::

        metrics = Metrics()
        registry.register(PrometheusCollector(metrics))  # or prometheus_client.REGISTRY
        async with CNIPlugin(..., observers=[metrics]) as cni: ...

    The families (labels in brackets):

    - ``cni_async_operation_duration_seconds`` (histogram; ``operation``: ``set_up_pod``,
      ``tear_down_pod``, ``get_pod_network_status``, ``status``, ``gc``): every finished call,
      failed and cancelled ones included; its ``_count`` is the number of calls;
    - ``cni_async_operation_failures_total`` (``operation``, ``error``: the exception's class
      name) and ``cni_async_operation_cancellations_total`` (``operation``);
    - ``cni_async_operations_in_flight`` (gauge; ``operation``);
    - ``cni_async_operation_retries_total`` (``operation``): attempts that a plugin's "try
      again later" made the [`RetryPolicy`][cni_async.RetryPolicy] run again;
    - ``cni_async_plugin_run_duration_seconds`` (histogram; ``verb``: ``ADD``, ``DEL``, ...,
      ``plugin``: the plugin's type), from lookup to exit;
    - ``cni_async_plugin_errors_total`` (``verb``, ``plugin``, ``code``: the CNI error code,
      empty when none applies, ``error``: the exception's class name): failed plugin runs;
    - ``cni_async_plugin_run_cancellations_total`` (``verb``, ``plugin``);
    - ``cni_async_config_reloads_total``, and the gauges ``cni_async_config_networks`` and
      ``cni_async_config_invalid_files`` (the generation in use);
    - ``cni_async_rollbacks_total`` and ``cni_async_rollback_failures_total`` (DELs of
      rollbacks that failed).

    The histograms' buckets are the observer's (``Metrics(buckets=...)``). No label carries a
    pod's name, namespace, sandbox ID, annotations or args. The collector has a ``describe``,
    so registering two of them on one registry fails as for any duplicate metric.

    :param metrics: the observer whose counts to expose
    :raises ImportError: ``prometheus-client`` is not installed
    """

    def __init__(self, metrics: Metrics) -> None:
        try:
            from prometheus_client import core, utils
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PrometheusCollector needs prometheus-client: pip install 'cni_async[prometheus]'"
            ) from exc
        self._core = core
        self._le = utils.floatToGoString
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (what ``CollectorRegistry.register`` asks)."""
        return self._families(_EMPTY)

    def collect(self) -> Iterator[Metric]:
        """The metric families of a fresh snapshot (what a scrape asks)."""
        return self._families(self.metrics.snapshot())

    def _buckets(self, histogram: Histogram) -> list[tuple[str, float]]:
        bounds = [*map(self._le, histogram.bounds), "+Inf"]
        return list(zip(bounds, histogram.counts, strict=True))

    def _families(self, snap: MetricsSnapshot) -> Iterator[Metric]:
        core = self._core
        prefix = "cni_async_"

        duration = core.HistogramMetricFamily(
            prefix + "operation_duration",
            "Time pod-API calls took, failed and cancelled ones included.",
            labels=["operation"],
            unit="seconds",
        )
        failures = core.CounterMetricFamily(
            prefix + "operation_failures_total",
            "Pod-API calls that raised, by exception class.",
            labels=["operation", "error"],
        )
        cancellations = core.CounterMetricFamily(
            prefix + "operation_cancellations_total",
            "Pod-API calls that were cancelled.",
            labels=["operation"],
        )
        in_flight = core.GaugeMetricFamily(
            prefix + "operations_in_flight", "Pod-API calls running now.", labels=["operation"]
        )
        retries = core.CounterMetricFamily(
            prefix + "operation_retries_total",
            "Pod-API calls run again after a plugin asked to try again later.",
            labels=["operation"],
        )
        for op in snap.operations:
            duration.add_metric([op.kind], self._buckets(op.latency), op.latency.sum_s)
            for error, count in sorted(op.errors.items()):
                failures.add_metric([op.kind, error], count)
            cancellations.add_metric([op.kind], op.cancelled)
            in_flight.add_metric([op.kind], op.in_flight)
            retries.add_metric([op.kind], op.retries)
        yield from (duration, failures, cancellations, in_flight, retries)

        runs = core.HistogramMetricFamily(
            prefix + "plugin_run_duration",
            "Time plugin runs took, from lookup to exit.",
            labels=["verb", "plugin"],
            unit="seconds",
        )
        run_cancellations = core.CounterMetricFamily(
            prefix + "plugin_run_cancellations_total",
            "Plugin runs stopped by a cancellation.",
            labels=["verb", "plugin"],
        )
        for run in snap.plugin_runs:
            runs.add_metric([run.verb, run.plugin], self._buckets(run.latency), run.latency.sum_s)
            run_cancellations.add_metric([run.verb, run.plugin], run.cancelled)
        errors = core.CounterMetricFamily(
            prefix + "plugin_errors_total",
            "Failed plugin runs, by CNI error code (empty: none) and exception class.",
            labels=["verb", "plugin", "code", "error"],
        )
        for e in snap.errors:
            code = "" if e.code is None else str(e.code)
            errors.add_metric([e.verb, e.plugin, code, e.error], e.count)
        yield from (runs, run_cancellations, errors)

        yield core.CounterMetricFamily(
            prefix + "config_reloads_total",
            "Configuration generations loaded (the first one included).",
            value=snap.reloads,
        )
        yield core.GaugeMetricFamily(
            prefix + "config_networks",
            "Usable networks in the configuration generation in use.",
            value=snap.networks,
        )
        yield core.GaugeMetricFamily(
            prefix + "config_invalid_files",
            "Invalid configuration files in the configuration generation in use.",
            value=snap.invalid_files,
        )
        yield core.CounterMetricFamily(
            prefix + "rollbacks_total", "Set-ups that were rolled back.", value=snap.rollbacks
        )
        yield core.CounterMetricFamily(
            prefix + "rollback_failures_total",
            "DELs of rollbacks that failed (attachments left for teardown or GC).",
            value=snap.rollback_failures,
        )
