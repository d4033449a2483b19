"""In-memory metrics: an observer that counts and times operations, plugin runs and reloads."""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Final

import msgspec

from .._errors import CNIError
from .._libcni.observing import PluginRunInfo, is_cancellation
from .observer import Observer, OperationInfo

if TYPE_CHECKING:
    from .._confdir.snapshot import ConfigSnapshot

__all__ = [
    "DEFAULT_BUCKETS",
    "ErrorCount",
    "Histogram",
    "Metrics",
    "MetricsSnapshot",
    "OperationStats",
    "PluginRunStats",
]

DEFAULT_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds, in seconds, of the latency buckets [`Metrics`][cni_async.Metrics] uses by
default."""


class Histogram(msgspec.Struct, frozen=True):
    """Latencies in buckets, as Prometheus keeps them.

    :ivar bounds: the buckets' upper bounds in seconds, ascending (a last, unbounded bucket
        is implied)
    :ivar counts: how many observations fell at or under each bound, cumulatively, then the
        total (one more entry than ``bounds``)
    :ivar sum_s: the sum of every observation, in seconds
    :ivar max_s: the largest observation, in seconds
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum_s: float
    max_s: float

    @property
    def count(self) -> int:
        """How many observations there were."""
        return self.counts[-1]


class OperationStats(msgspec.Struct, frozen=True):
    """Calls of one pod-API method.

    :ivar kind: the method ([`OperationInfo.kind`][cni_async.OperationInfo])
    :ivar count: calls finished
    :ivar failed: calls that raised a [`CNIError`][cni_async.CNIError] (or another exception)
    :ivar cancelled: calls that were cancelled
    :ivar in_flight: calls running now
    :ivar latency: the time finished calls took, failed and cancelled ones included
    :ivar errors: failed calls by exception class name
    :ivar retries: attempts that a plugin's "try again later" made the
        [`RetryPolicy`][cni_async.RetryPolicy] run again (not counted in ``count``: a call
        retried twice is one call)
    """

    kind: str
    count: int
    failed: int
    cancelled: int
    in_flight: int
    latency: Histogram
    errors: dict[str, int]
    retries: int = 0


class PluginRunStats(msgspec.Struct, frozen=True):
    """Runs of one plugin for one verb.

    :ivar verb: ``CNI_COMMAND``
    :ivar plugin: the plugin's type
    :ivar count: runs finished
    :ivar failed: runs that raised (the plugin's error, a timeout, a missing binary...)
    :ivar cancelled: runs stopped by a cancellation
    :ivar latency: the time runs took, from lookup to exit
    """

    verb: str
    plugin: str
    count: int
    failed: int
    cancelled: int
    latency: Histogram


class ErrorCount(msgspec.Struct, frozen=True):
    """How often plugin runs failed one way.

    :ivar verb: ``CNI_COMMAND``
    :ivar plugin: the plugin's type
    :ivar code: the CNI error code (``None`` where none applies)
    :ivar error: the exception's class name (``PluginError``, ``PluginTimeout``, ...)
    :ivar count: how many runs failed so
    """

    verb: str
    plugin: str
    code: int | None
    error: str
    count: int


class MetricsSnapshot(msgspec.Struct, frozen=True):
    """Everything [`Metrics`][cni_async.Metrics] counted, at one moment; ``msgspec.json.encode``
    turns it into JSON for an exporter.

    :ivar operations: by method, sorted by name
    :ivar plugin_runs: by verb and plugin, sorted
    :ivar errors: failed plugin runs by verb, plugin, code and exception class, sorted
    :ivar in_flight: pod-API calls running now
    :ivar reloads: configuration generations loaded (the first one included)
    :ivar networks: usable networks in the current generation
    :ivar invalid_files: invalid configuration files in the current generation
    :ivar rollbacks: set-ups that were rolled back
    :ivar rollback_failures: DELs that failed during rollbacks
    """

    operations: tuple[OperationStats, ...]
    plugin_runs: tuple[PluginRunStats, ...]
    errors: tuple[ErrorCount, ...]
    in_flight: int
    reloads: int
    networks: int
    invalid_files: int
    rollbacks: int
    rollback_failures: int


class _Timings:
    __slots__ = (
        "cancelled",
        "count",
        "counts",
        "errors",
        "failed",
        "in_flight",
        "max",
        "retries",
        "sum",
    )

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.count = self.failed = self.cancelled = self.in_flight = self.retries = 0
        self.sum = self.max = 0.0
        self.errors: dict[str, int] = {}

    def histogram(self, bounds: tuple[float, ...]) -> Histogram:
        cumulative: list[int] = []
        total = 0
        for n in self.counts:
            total += n
            cumulative.append(total)
        return Histogram(bounds, tuple(cumulative), self.sum, self.max)


class Metrics(Observer):
    """An observer that counts and times what the library does; read it with
    [`snapshot`][cni_async.Metrics.snapshot].

    Pass it to [`CNIPlugin`][cni_async.CNIPlugin] (``observers=[metrics]``) and export
    [`snapshot`][cni_async.Metrics.snapshot] however your runtime exports metrics.
    [`snapshot`][cni_async.Metrics.snapshot] may be called from any thread.

    :param buckets: the latency buckets' upper bounds in seconds, ascending
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        if not all(map(math.isfinite, self.buckets)) or list(self.buckets) != sorted(
            set(self.buckets)
        ):
            raise ValueError("buckets must be finite, distinct and ascending (+Inf is implied)")
        self._lock = threading.Lock()
        self._operations: dict[str, _Timings] = {}
        self._runs: dict[tuple[str, str], _Timings] = {}
        self._errors: dict[tuple[str, str, int | None, str], int] = {}
        self._reloads = self._networks = self._invalid = 0
        self._rollbacks = self._rollback_failures = 0

    def _record(self, t: _Timings, elapsed: float, exc: BaseException | None) -> None:
        t.counts[bisect.bisect_left(self.buckets, elapsed)] += 1
        t.count += 1
        t.sum += elapsed
        t.max = max(t.max, elapsed)
        if exc is None:
            return
        if is_cancellation(exc):
            t.cancelled += 1
        else:
            t.failed += 1
            name = type(exc).__name__
            t.errors[name] = t.errors.get(name, 0) + 1

    @contextmanager
    def _timed(self, done: Callable[[float, BaseException | None], None]) -> Iterator[None]:
        """Time the block; call ``done(seconds, exception or None)`` under the lock."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._lock:
                done(time.perf_counter() - started, error)

    def operation(self, info: OperationInfo) -> AbstractContextManager[None]:
        with self._lock:
            t = self._operations.get(info.kind) or self._operations.setdefault(
                info.kind, _Timings(len(self.buckets))
            )
            t.in_flight += 1

        def done(elapsed: float, error: BaseException | None) -> None:
            t.in_flight -= 1
            self._record(t, elapsed, error)

        return self._timed(done)

    def plugin_run(
        self, info: PluginRunInfo, env: MutableMapping[str, str]
    ) -> AbstractContextManager[None]:
        key = (info.verb, info.plugin)

        def done(elapsed: float, error: BaseException | None) -> None:
            t = self._runs.get(key) or self._runs.setdefault(key, _Timings(len(self.buckets)))
            self._record(t, elapsed, error)
            if error is not None and not is_cancellation(error):
                code = error.code if isinstance(error, CNIError) else None
                ekey = (info.verb, info.plugin, code, type(error).__name__)
                self._errors[ekey] = self._errors.get(ekey, 0) + 1

        return self._timed(done)

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        with self._lock:
            self._rollbacks += 1
            self._rollback_failures += len(errors)

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        with self._lock:
            t = self._operations.get(info.kind) or self._operations.setdefault(
                info.kind, _Timings(len(self.buckets))
            )
            t.retries += 1

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        with self._lock:
            self._reloads += 1
            self._networks = len(snapshot.networks)
            self._invalid = len(snapshot.invalid)

    def snapshot(self) -> MetricsSnapshot:
        """A consistent copy of every count so far."""
        with self._lock:
            operations = tuple(
                OperationStats(
                    kind,
                    t.count,
                    t.failed,
                    t.cancelled,
                    t.in_flight,
                    t.histogram(self.buckets),
                    dict(t.errors),
                    t.retries,
                )
                for kind, t in sorted(self._operations.items())
            )
            runs = tuple(
                PluginRunStats(
                    verb, plugin, t.count, t.failed, t.cancelled, t.histogram(self.buckets)
                )
                for (verb, plugin), t in sorted(self._runs.items())
            )
            errors = tuple(
                ErrorCount(verb, plugin, code, name, n)
                for (verb, plugin, code, name), n in sorted(
                    self._errors.items(),
                    key=lambda item: (*item[0][:2], item[0][2] or 0, item[0][3]),
                )
            )
            return MetricsSnapshot(
                operations=operations,
                plugin_runs=runs,
                errors=errors,
                in_flight=sum(op.in_flight for op in operations),
                reloads=self._reloads,
                networks=self._networks,
                invalid_files=self._invalid,
                rollbacks=self._rollbacks,
                rollback_failures=self._rollback_failures,
            )
