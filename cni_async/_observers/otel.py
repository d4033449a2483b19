"""OpenTelemetry: a span per pod operation and per plugin run, and trace context for plugins.

Needs the ``otel`` extra (``pip install 'cni_async[otel]'``, which brings ``opentelemetry-api``);
the application configures the SDK and its exporters as usual.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._errors import ERR_TRY_AGAIN_LATER, CNIError
from .._libcni.observing import PluginRunInfo, is_cancellation
from .._version import __version__
from .observer import Observer, OperationInfo

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryObserver"]

_ENV_UNSAFE = re.compile(r"[^A-Z0-9_]")


def _env_name(key: str) -> str:
    """A propagation key as an environment variable (``traceparent`` -> ``TRACEPARENT``)."""
    return _ENV_UNSAFE.sub("_", key.upper())


class OpenTelemetryObserver(Observer):
    """Spans for every pod operation and every plugin run; trace context for the plugins.

    Each pod-API call becomes a span ``cni <method>`` (``cni set_up_pod``, ...) in the caller's
    current context, so it nests under the runtime's own span; each plugin process becomes a
    child span ``cni <VERB> <plugin>``. When that span's context is valid (an SDK is set up, or
    the caller's context carries a valid span), the plugin gets it in its environment, as
    libcni's unreleased HEAD does: ``TRACEPARENT``, and ``TRACESTATE`` and ``BAGGAGE`` when they
    are not empty (the propagator's keys, upper-cased). Failed spans
    carry the exception, the status ``ERROR`` and ``cni.error.code``; cancelled ones
    ``cni.cancelled`` (and no error status: the deadline was the caller's). A retry (see
    [`RetryPolicy`][cni_async.RetryPolicy]) is an event ``cni.retry`` on its operation's span,
    with ``cni.retry.attempt`` (the attempt that failed), ``cni.retry.delay`` (seconds),
    ``error.type`` and ``cni.error.code``; each attempt's plugin runs are children of that one
    span. VERSION probes
    outside any recording span (those of a configuration reload) make no span. Attributes
    never include pod annotations or args.

    :param tracer_provider: where spans go (the global provider by default)
    :param propagator: how the context is written for plugins (the global propagator by
        default, W3C trace context and baggage unless the application changed it)
    :raises ImportError: ``opentelemetry-api`` is not installed
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        try:
            from opentelemetry import propagate, trace
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "OpenTelemetryObserver needs opentelemetry-api: pip install 'cni_async[otel]'"
            ) from exc
        self._trace = trace
        self._tracer = trace.get_tracer("cni_async", __version__, tracer_provider=tracer_provider)
        self._propagator = propagator or propagate.get_global_textmap()

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                self._failed(span, exc)
                raise

    def _failed(self, span: Span, exc: BaseException) -> None:
        status = self._trace.Status
        if is_cancellation(exc):  # a deadline the caller chose is not an error of ours
            span.set_attribute("cni.cancelled", True)
            return
        if isinstance(exc, CNIError) and exc.code is not None:
            span.set_attribute("cni.error.code", exc.code)
        span.record_exception(exc)
        span.set_status(status(self._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    @contextmanager
    def operation(self, info: OperationInfo) -> Iterator[None]:
        attributes: dict[str, Any] = {"cni.operation": info.kind}
        if info.container_id:
            attributes["container.id"] = info.container_id
            attributes["k8s.namespace.name"] = info.pod_namespace
            attributes["k8s.pod.name"] = info.pod_name
        if info.networks:
            attributes["cni.networks"] = list(info.networks)
        with self._span(f"cni {info.kind}", attributes):
            yield

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        # Called in the operation's task, inside its span: that span is the current one.
        span = self._trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "cni.operation": info.kind,
            "cni.retry.attempt": attempt,
            "cni.retry.delay": delay,
            "error.type": type(error).__name__,
            # every error in it is code 11 (an aggregate of several networks' has no code)
            "cni.error.code": ERR_TRY_AGAIN_LATER,
        }
        span.add_event("cni.retry", attributes)

    @contextmanager
    def plugin_run(self, info: PluginRunInfo, env: MutableMapping[str, str]) -> Iterator[None]:
        attributes: dict[str, Any] = {"cni.command": info.verb, "cni.plugin": info.plugin}
        if info.network is not None:
            attributes["cni.network"] = info.network
        if info.container_id is not None:
            attributes["container.id"] = info.container_id
        if info.ifname is not None:
            attributes["cni.ifname"] = info.ifname
        if info.verb == "VERSION" and not self._trace.get_current_span().is_recording():
            # the probes of a reload, outside any operation: no root span per plugin and reload
            yield
            return
        with self._span(f"cni {info.verb} {info.plugin}", attributes) as span:
            if span.get_span_context().is_valid:
                carrier: dict[str, str] = {}
                self._propagator.inject(carrier)
                env.update({_env_name(k): v for k, v in carrier.items() if v})
            yield
