"""OpenTelemetry metrics: durations and counts of operations, plugin runs, errors and reloads.

Needs the ``otel`` extra (``pip install 'cni_async[otel]'``, which brings ``opentelemetry-api``);
the application configures the SDK, its readers and exporters as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._errors import CNIError
from .._libcni.observing import PluginRunInfo, is_cancellation
from .._version import __version__
from .metrics import DEFAULT_BUCKETS
from .observer import Observer, OperationInfo

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

    from .._confdir.snapshot import ConfigSnapshot

__all__ = ["OpenTelemetryMetrics"]


def _outcome(exc: BaseException | None) -> dict[str, Any]:
    """The attributes an ending adds: none for success, ``cni.cancelled`` for a cancellation,
    ``error.type`` (and ``cni.error.code`` when there is one) for a failure."""
    if exc is None:
        return {}
    if is_cancellation(exc):  # the caller's deadline, not a failure (as on the spans)
        return {"cni.cancelled": True}
    attributes: dict[str, Any] = {"error.type": type(exc).__name__}
    if isinstance(exc, CNIError) and exc.code is not None:
        attributes["cni.error.code"] = exc.code
    return attributes


class OpenTelemetryMetrics(Observer):
    """OpenTelemetry instruments fed by every pod operation, plugin run, rollback and reload.

    Pass it to [`CNIPlugin`][cni_async.CNIPlugin] (``observers=[OpenTelemetryMetrics()]``, next to
    an [`OpenTelemetryObserver`][cni_async.OpenTelemetryObserver] for spans if you like); the
    application's ``MeterProvider`` exports what it records. The instruments, under the meter
    ``cni_async``:

    - ``cni.operation.duration`` (histogram, ``s``): pod-API calls, attribute
      ``cni.operation`` (``set_up_pod``, ``tear_down_pod``, ``get_pod_network_status``,
      ``status``, ``gc``);
    - ``cni.operation.active`` (up-down counter): pod-API calls in flight, by ``cni.operation``;
    - ``cni.plugin.duration`` (histogram, ``s``): plugin processes, from lookup to exit;
      attributes ``cni.command`` (``ADD``, ``DEL``, ...), ``cni.plugin`` (the plugin's type)
      and ``cni.network`` (absent for VERSION probes);
    - ``cni.plugin.errors`` (counter): failed plugin runs, with the run's attributes,
      ``error.type`` and ``cni.error.code``;
    - ``cni.operation.retries`` (counter): attempts of pod-API calls that a plugin's "try
      again later" made the [`RetryPolicy`][cni_async.RetryPolicy] run again, by
      ``cni.operation``;
    - ``cni.rollbacks`` (counter): set-ups rolled back; ``cni.rollback.failures`` (counter):
      their DELs that failed, by ``cni.network``;
    - ``cni.config.reloads`` (counter): configuration generations loaded, the first included;
      ``cni.config.networks`` and ``cni.config.invalid_files`` (gauges): usable networks and
      invalid files in the generation in use.

    A failed call or run adds ``error.type`` (the exception's class name) and, when it has
    one, ``cni.error.code`` (the CNI error code) to its duration; a cancelled one adds
    ``cni.cancelled`` instead (a deadline is the caller's choice, not an error). The attribute
    names are those of [`OpenTelemetryObserver`][cni_async.OpenTelemetryObserver]'s spans. No
    attribute ever carries a pod's name, namespace, sandbox ID, annotations or args: the set of
    attribute values stays as small as the set of networks and plugins.

    :param meter_provider: where the instruments live (the global provider by default)
    :param meter: a meter to use instead of one from ``meter_provider``
    :param buckets: the duration histograms' bucket bounds in seconds, given to the SDK as
        advice (a view configured in the SDK overrides them)
    :raises ImportError: ``opentelemetry-api`` is not installed
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        meter: Meter | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "OpenTelemetryMetrics needs opentelemetry-api: pip install 'cni_async[otel]'"
            ) from exc
        self._observation = metrics.Observation
        if meter is None:
            meter = metrics.get_meter("cni_async", __version__, meter_provider=meter_provider)
        bounds = list(buckets)
        self._operation_duration = meter.create_histogram(
            "cni.operation.duration",
            unit="s",
            description="Duration of pod-API calls, failed and cancelled ones included.",
            explicit_bucket_boundaries_advisory=bounds,
        )
        self._operation_active = meter.create_up_down_counter(
            "cni.operation.active",
            unit="{operation}",
            description="Pod-API calls in flight.",
        )
        self._plugin_duration = meter.create_histogram(
            "cni.plugin.duration",
            unit="s",
            description="Duration of plugin runs, from lookup to exit.",
            explicit_bucket_boundaries_advisory=bounds,
        )
        self._plugin_errors = meter.create_counter(
            "cni.plugin.errors",
            unit="{error}",
            description="Failed plugin runs, by CNI error code and exception class.",
        )
        self._retries = meter.create_counter(
            "cni.operation.retries",
            unit="{retry}",
            description="Pod-API calls run again after a plugin asked to try again later.",
        )
        self._rollbacks = meter.create_counter(
            "cni.rollbacks", unit="{rollback}", description="Set-ups that were rolled back."
        )
        self._rollback_failures = meter.create_counter(
            "cni.rollback.failures",
            unit="{del}",
            description="DELs of rollbacks that failed (attachments left for teardown or GC).",
        )
        self._reloads = meter.create_counter(
            "cni.config.reloads",
            unit="{reload}",
            description="Configuration generations loaded (the first one included).",
        )
        self._networks: int | None = None
        self._invalid_files: int | None = None
        meter.create_observable_gauge(
            "cni.config.networks",
            callbacks=[self._observe_networks],
            unit="{network}",
            description="Usable networks in the configuration generation in use.",
        )
        meter.create_observable_gauge(
            "cni.config.invalid_files",
            callbacks=[self._observe_invalid_files],
            unit="{file}",
            description="Invalid configuration files in the configuration generation in use.",
        )

    def _observe_networks(self, options: CallbackOptions) -> Iterable[Observation]:
        value = self._networks
        return [] if value is None else [self._observation(value)]

    def _observe_invalid_files(self, options: CallbackOptions) -> Iterable[Observation]:
        value = self._invalid_files
        return [] if value is None else [self._observation(value)]

    @contextmanager
    def operation(self, info: OperationInfo) -> Iterator[None]:
        attributes: dict[str, Any] = {"cni.operation": info.kind}
        self._operation_active.add(1, attributes)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._operation_active.add(-1, attributes)
            self._operation_duration.record(elapsed, {**attributes, **_outcome(error)})

    @contextmanager
    def plugin_run(self, info: PluginRunInfo, env: MutableMapping[str, str]) -> Iterator[None]:
        attributes: dict[str, Any] = {"cni.command": info.verb, "cni.plugin": info.plugin}
        if info.network is not None:
            attributes["cni.network"] = info.network
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            outcome = _outcome(error)
            self._plugin_duration.record(elapsed, {**attributes, **outcome})
            if "error.type" in outcome:
                self._plugin_errors.add(1, {**attributes, **outcome})

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        self._rollbacks.add(1)
        for error in errors:
            self._rollback_failures.add(
                1, {"cni.network": error.network} if error.network is not None else {}
            )

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        self._retries.add(1, {"cni.operation": info.kind})

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        self._reloads.add(1)
        self._networks = len(snapshot.networks)
        self._invalid_files = len(snapshot.invalid)
