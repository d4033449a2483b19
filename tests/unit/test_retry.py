"""Retries of "try again later" (CNI code 11): the policy, set-up, teardown and GC, the caller's
deadline, cancellation in a backoff, and what observers see; fake plugins, unprivileged."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from cni_async import (
    BlockingCNIPlugin,
    CNIError,
    CNIPlugin,
    InvalidArgument,
    Metrics,
    MultipleErrors,
    NetAttachment,
    Observer,
    OpenTelemetryMetrics,
    OpenTelemetryObserver,
    OperationInfo,
    PluginError,
    PodNetwork,
    PodNetworkError,
    PrometheusCollector,
    RetryPolicy,
    RuntimeConfig,
    TryAgainLater,
)
from cni_async._testing import is_try_again_later

from ..support.namespaces import FakeNamespaces, fake_cni
from ..support.plugins import FakePlugin, write_conflist

pytestmark = pytest.mark.anyio

BUSY = {"stdout": {"code": 11, "msg": "busy, try again later"}, "exit": 1}
SECRET = "annotation-value-0d4e"
# No jitter: the delays are exactly 10 ms, 20 ms, 40 ms...
FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, multiplier=2.0, max_delay=1.0, jitter=0.0)
# A first delay no test waits for: ended by a teardown, a cancellation or a deadline.
SLOW = RetryPolicy(max_attempts=4, initial_delay=30.0, max_delay=30.0, jitter=0.0)


class Recorder(Observer):
    """Every retry as it is announced; ``retried`` is set at the first."""

    def __init__(self) -> None:
        self.retries: list[tuple[str, int, float, CNIError]] = []
        self.retried = anyio.Event()

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        self.retries.append((info.kind, attempt, delay, error))
        self.retried.set()


class Broken(Observer):
    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        raise RuntimeError("observer bug")


@pytest.fixture
def namespaces() -> FakeNamespaces:
    return FakeNamespaces()


@pytest.fixture
def fa(dirs: dict[str, Path]) -> FakePlugin:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}], filename="10-neta.conflist")
    return FakePlugin(dirs["bin"], "fa")


def plugin(
    dirs: dict[str, Path],
    namespaces: FakeNamespaces,
    retry: RetryPolicy | None,
    *observers: Observer,
) -> CNIPlugin:
    return fake_cni(dirs, namespaces, observers=observers, retry=retry)


async def set_up_keeping_error(cni: CNIPlugin, p: PodNetwork, failed: list[BaseException]) -> None:
    """``set_up_pod(p)``, its ``PodNetworkError`` kept in ``failed`` rather than raised."""
    try:
        await cni.set_up_pod(p)
    except PodNetworkError as exc:
        failed.append(exc)


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def cni(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces, recorder: Recorder
) -> AsyncIterator[CNIPlugin]:
    async with plugin(dirs, namespaces, FAST, recorder) as p:
        yield p


def pod(namespaces: FakeNamespaces, name: str = "p1") -> PodNetwork:
    return PodNetwork(
        name,
        "ns1",
        f"id-{name}",
        f"uid-{name}",
        namespaces.add(name),
        [NetAttachment("neta")],
        runtime_config={"neta": RuntimeConfig(pod_annotations={"secret": SECRET})},
    )


def cached(dirs: dict[str, Path]) -> list[str]:
    results = dirs["cache"] / "results"
    return sorted(os.listdir(results)) if results.exists() else []


def verbs(fake: FakePlugin) -> list[str]:
    return [c for c in fake.commands() if c != "VERSION"]


def notes(exc: BaseException) -> str:
    return "\n".join(getattr(exc, "__notes__", ()))


# -- the policy -------------------------------------------------------------------------------


def test_the_policy_checks_its_fields() -> None:
    assert RetryPolicy() == RetryPolicy(
        max_attempts=4, initial_delay=0.25, multiplier=2.0, max_delay=5.0, jitter=0.5
    )
    RetryPolicy(max_attempts=1, initial_delay=0, multiplier=1, max_delay=0, jitter=1)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts"),
        ({"max_attempts": True}, TypeError, "max_attempts"),
        ({"initial_delay": -0.1}, ValueError, "initial_delay"),
        ({"initial_delay": math.nan}, ValueError, "initial_delay"),
        ({"initial_delay": "1"}, TypeError, "initial_delay"),
        ({"multiplier": 0.5}, ValueError, "multiplier"),
        ({"multiplier": math.inf}, ValueError, "multiplier"),
        ({"max_delay": 0.1, "initial_delay": 0.2}, ValueError, "max_delay"),
        ({"jitter": 1.5}, ValueError, "jitter"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"jitter": None}, TypeError, "jitter"),
    ]
    for fields, error, name in bad:
        with pytest.raises(error, match=rf"RetryPolicy\.{name}"):
            RetryPolicy(**fields)
    with pytest.raises(InvalidArgument, match="RetryPolicy"):
        CNIPlugin(watch=False, retry=3)  # type: ignore[arg-type]


def test_delays_grow_to_the_maximum_with_jitter_below_them() -> None:
    assert [FAST.delay(n) for n in range(1, 9)] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]
    assert FAST.delay(10_000) == 1.0  # no overflow
    with pytest.raises(ValueError, match="retry"):
        FAST.delay(0)
    full = RetryPolicy(initial_delay=1.0, max_delay=1.0, jitter=1.0)
    half = RetryPolicy(initial_delay=1.0, max_delay=1.0, jitter=0.5)
    full_draws = [full.delay(1) for _ in range(500)]
    half_draws = [half.delay(1) for _ in range(500)]
    assert all(0.0 <= d <= 1.0 for d in full_draws) and min(full_draws) < 0.5
    assert all(0.5 <= d <= 1.0 for d in half_draws) and len(set(half_draws)) > 1


def test_only_code_11_and_nothing_else_is_retried() -> None:
    again = TryAgainLater("busy", network="a")
    other = PluginError("bad config", code=7, network="b")
    assert is_try_again_later(again)
    assert not is_try_again_later(other)
    assert not is_try_again_later(PluginError("no error object", code=0))
    assert is_try_again_later(PodNetworkError("ns/p", "set-up", [again, TryAgainLater("x")]))
    assert not is_try_again_later(PodNetworkError("ns/p", "set-up", [again, other]))
    rollback_failed = PodNetworkError("ns/p", "set-up", [again], rollback_errors=[other])
    assert not is_try_again_later(rollback_failed)
    nested = MultipleErrors("gc", [MultipleErrors("DEL", [again, again]), again])
    assert is_try_again_later(nested)
    assert not is_try_again_later(MultipleErrors("gc", []))
    assert not is_try_again_later(asyncio.CancelledError())


# -- set-up -----------------------------------------------------------------------------------


async def test_set_up_succeeds_after_two_try_again_later(
    dirs: dict[str, Path],
    fa: FakePlugin,
    namespaces: FakeNamespaces,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cni_async")
    fa.on("ADD", times=2, **BUSY)
    metrics = Metrics()
    async with plugin(dirs, namespaces, FAST, recorder, metrics) as cni:
        with anyio.fail_after(30):  # a deadline far beyond the delays: it does not stop them
            [result] = await cni.set_up_pod(pod(namespaces))
    assert result.name == "neta" and result.ifname == "eth0"
    # each failed attempt was rolled back before the next began
    assert verbs(fa) == ["ADD", "DEL", "ADD", "DEL", "ADD"]
    assert cached(dirs) == ["neta-id-p1-eth0"]
    assert await cni.engine.cache.intents() == {}
    assert [(kind, n, delay) for kind, n, delay, _ in recorder.retries] == [
        ("set_up_pod", 1, 0.01),
        ("set_up_pod", 2, 0.02),
    ]
    for *_, error in recorder.retries:
        assert isinstance(error, PodNetworkError) and error.code == 11
        assert isinstance(error.errors[0], TryAgainLater)
    [op] = metrics.snapshot().operations
    assert (op.kind, op.count, op.failed, op.retries) == ("set_up_pod", 1, 0, 2)
    assert metrics.snapshot().rollbacks == 2
    lines = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.INFO for r in lines)
    assert "retrying in 0.01 s" in lines[0].getMessage()
    assert SECRET not in caplog.text


async def test_always_try_again_later_gives_up_after_max_attempts(
    cni: CNIPlugin, fa: FakePlugin, namespaces: FakeNamespaces, recorder: Recorder, dirs: Any
) -> None:
    fa.on("ADD", **BUSY)
    with pytest.raises(PodNetworkError) as info:
        await cni.set_up_pod(pod(namespaces))
    assert info.value.code == 11 and isinstance(info.value.errors[0], TryAgainLater)
    assert "gave up after 4 attempts" in notes(info.value)
    assert verbs(fa) == ["ADD", "DEL"] * 4
    assert [n for _, n, _, _ in recorder.retries] == [1, 2, 3]
    assert cached(dirs) == []
    assert await cni.engine.cache.intents() == {}


@pytest.mark.parametrize("behaviour", [{"stdout": {"code": 7, "msg": "bad"}}, {"stderr": "x"}])
async def test_other_codes_are_never_retried(
    cni: CNIPlugin,
    fa: FakePlugin,
    namespaces: FakeNamespaces,
    recorder: Recorder,
    behaviour: dict[str, Any],
) -> None:
    fa.on("ADD", exit=1, **behaviour)
    with pytest.raises(PodNetworkError) as info:
        await cni.set_up_pod(pod(namespaces))
    assert info.value.code != 11
    assert verbs(fa) == ["ADD", "DEL"]
    assert recorder.retries == []


@pytest.mark.parametrize("retry", [None, RetryPolicy(max_attempts=1)])
async def test_without_a_policy_nothing_is_retried(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces, retry: RetryPolicy | None
) -> None:
    fa.on("ADD", **BUSY)
    recorder = Recorder()
    async with plugin(dirs, namespaces, retry, recorder) as cni:
        with pytest.raises(PodNetworkError) as info:
            await cni.set_up_pod(pod(namespaces))
    assert info.value.code == 11 and "gave up" not in notes(info.value)
    assert verbs(fa) == ["ADD", "DEL"]
    assert recorder.retries == []


async def test_cancelled_in_the_middle_of_a_backoff(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces
) -> None:
    fa.on("ADD", **BUSY)
    recorder, metrics = Recorder(), Metrics()
    async with plugin(dirs, namespaces, SLOW, recorder, metrics) as cni:
        scope = anyio.CancelScope()

        async def set_up() -> None:
            with scope:
                await cni.set_up_pod(pod(namespaces))

        async with anyio.create_task_group() as tg:
            tg.start_soon(set_up)
            await recorder.retried.wait()
            await anyio.sleep(0.05)  # well inside the 30 s wait
            cancelled_at = anyio.current_time()
            scope.cancel()
        assert anyio.current_time() - cancelled_at < 5
        assert scope.cancelled_caught
        assert verbs(fa) == ["ADD", "DEL"]  # the attempt was rolled back; nothing after
        assert cached(dirs) == []
        assert await cni.engine.cache.intents() == {}
        assert cni._pods.retrying == {}
        [op] = metrics.snapshot().operations
        assert (op.cancelled, op.failed, op.retries, op.in_flight) == (1, 0, 1, 0)


async def test_a_wait_past_the_callers_deadline_is_not_started(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces
) -> None:
    fa.on("ADD", **BUSY)
    recorder = Recorder()
    async with plugin(dirs, namespaces, SLOW, recorder) as cni:
        started = anyio.current_time()
        with anyio.fail_after(20), pytest.raises(PodNetworkError) as info:
            await cni.set_up_pod(pod(namespaces))
        assert anyio.current_time() - started < 15  # not the 30 s delay, nor the deadline
        with anyio.move_on_after(20), pytest.raises(PodNetworkError):
            await cni.set_up_pod(pod(namespaces))
    assert info.value.code == 11 and "deadline" in notes(info.value)
    assert verbs(fa) == ["ADD", "DEL"] * 2
    assert recorder.retries == []


async def test_the_pod_lock_is_free_in_a_backoff_and_a_teardown_ends_it(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces
) -> None:
    fa.on("ADD", **BUSY)
    recorder = Recorder()
    p = pod(namespaces)
    failed: list[BaseException] = []
    async with plugin(dirs, namespaces, SLOW, recorder) as cni:
        # a deadline beyond the 30 s delay, so the set-up does wait; the test takes far less
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(set_up_keeping_error, cni, p, failed)
                await recorder.retried.wait()
                started = anyio.current_time()
                await cni.tear_down_pod(p)  # takes the pod's lock: not held by the backoff
        assert anyio.current_time() - started < 15
    [error] = failed
    assert "torn down" in notes(error)
    assert verbs(fa) == ["ADD", "DEL", "DEL"]  # the rollback's DEL, the teardown's: no ADD again
    assert cached(dirs) == []


@pytest.mark.parametrize("close", ["aclose", "shutdown"])
async def test_closing_the_plugin_ends_the_retries(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces, close: str
) -> None:
    fa.on("ADD", **BUSY)
    recorder = Recorder()
    failed: list[BaseException] = []
    # shutdown() lets the wait run out (half a second), then nothing is tried again
    policy = SLOW if close == "aclose" else RetryPolicy(initial_delay=0.5, jitter=0.0)
    async with plugin(dirs, namespaces, policy, recorder) as cni:
        with anyio.fail_after(60):  # beyond the 30 s delay: the set-up does wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(set_up_keeping_error, cni, pod(namespaces), failed)
                await recorder.retried.wait()
                started = anyio.current_time()
                if close == "aclose":
                    await cni.aclose()  # ends the wait at once
                else:
                    cni.shutdown()  # no retry after the current wait
        assert anyio.current_time() - started < 15
    [error] = failed
    assert "closing" in notes(error)
    assert verbs(fa) == ["ADD", "DEL"]
    assert len(recorder.retries) == 1


def test_blocking_facade_forwards_the_policy_and_its_timeout_bounds_it(
    dirs: dict[str, Path], fa: FakePlugin, anyio_backend: Any
) -> None:
    backend = anyio_backend[0]
    fa.on("ADD", **BUSY)
    namespaces = FakeNamespaces()
    blocking = BlockingCNIPlugin(
        str(dirs["conf"]),
        [str(dirs["bin"])],
        str(dirs["cache"]),
        watch=False,
        namespaces=namespaces,
        retry=SLOW,
        backend=backend,
    )
    # not TimeoutError: the plugin's error, at once
    with blocking as cni, pytest.raises(PodNetworkError) as info:
        cni.set_up_pod(pod(namespaces), timeout=10)
    assert "deadline" in notes(info.value)
    assert verbs(fa) == ["ADD", "DEL"]


# -- teardown and GC --------------------------------------------------------------------------


async def test_teardown_is_retried(
    cni: CNIPlugin, fa: FakePlugin, namespaces: FakeNamespaces, recorder: Recorder, dirs: Any
) -> None:
    p = pod(namespaces)
    await cni.set_up_pod(p)
    fa.on("DEL", times=2, **BUSY)
    await cni.tear_down_pod(p)
    assert verbs(fa) == ["ADD", "DEL", "DEL", "DEL"]
    assert [(kind, n) for kind, n, _, _ in recorder.retries] == [
        ("tear_down_pod", 1),
        ("tear_down_pod", 2),
    ]
    assert cached(dirs) == []


async def test_several_networks_all_trying_again_later_are_retried(
    cni: CNIPlugin, fa: FakePlugin, namespaces: FakeNamespaces, recorder: Recorder, dirs: Any
) -> None:
    write_conflist(dirs["conf"], "netb", [{"type": "fb"}], filename="20-netb.conflist")
    fb = FakePlugin(dirs["bin"], "fb")
    await cni.reload()
    p = PodNetwork(
        "p1",
        "ns1",
        "id-p1",
        "u",
        namespaces.add("p1"),
        [NetAttachment("neta"), NetAttachment("netb")],
    )
    await cni.set_up_pod(p)
    fa.on("DEL", times=1, **BUSY)
    fb.on("DEL", times=1, **BUSY)
    await cni.tear_down_pod(p)  # teardown tries every network: both errors, both code 11
    [(kind, _, _, error)] = recorder.retries
    assert kind == "tear_down_pod" and isinstance(error, PodNetworkError)
    assert [e.code for e in error.errors] == [11, 11] and error.code is None
    assert cached(dirs) == []
    # one code 11 and one other: not retried
    await cni.set_up_pod(p)
    fa.on("DEL", times=3, **BUSY)
    fb.on("DEL", times=3, stdout={"code": 7, "msg": "bad"}, exit=1)
    with pytest.raises(PodNetworkError) as info:
        await cni.tear_down_pod(p)
    assert sorted(e.code or 0 for e in info.value.errors) == [7, 11]
    assert len(recorder.retries) == 1
    assert verbs(fb) == ["ADD", "DEL", "DEL", "ADD", "DEL"]


async def test_teardown_that_always_fails_keeps_the_cache_entry(
    cni: CNIPlugin, fa: FakePlugin, namespaces: FakeNamespaces, dirs: Any
) -> None:
    p = pod(namespaces)
    await cni.set_up_pod(p)
    fa.on("DEL", **BUSY)
    with pytest.raises(PodNetworkError) as info:
        await cni.tear_down_pod(p)
    assert info.value.code == 11
    assert verbs(fa) == ["ADD", *["DEL"] * 4]
    assert cached(dirs) == ["neta-id-p1-eth0"]  # for a later teardown or GC


async def test_gc_is_retried(
    cni: CNIPlugin, fa: FakePlugin, namespaces: FakeNamespaces, recorder: Recorder, dirs: Any
) -> None:
    keep, drop = pod(namespaces, "keep"), pod(namespaces, "drop")
    await cni.set_up_pod(keep)
    await cni.set_up_pod(drop)
    fa.on("DEL", times=1, **BUSY)
    await cni.gc(iter([keep]))  # an iterator: the second attempt still sees the valid pods
    dels = [c["env"]["CNI_CONTAINERID"] for c in fa.calls("DEL")]
    assert dels == [drop.id, drop.id]
    assert [(kind, n) for kind, n, _, _ in recorder.retries] == [("gc", 1)]
    assert cached(dirs) == ["neta-id-keep-eth0"]
    for gc in fa.stdins("GC"):  # once per attempt
        assert gc["cni.dev/valid-attachments"] == [{"containerID": keep.id, "ifname": "eth0"}]


# -- observers --------------------------------------------------------------------------------


async def test_observers_see_each_retry(
    dirs: dict[str, Path], fa: FakePlugin, namespaces: FakeNamespaces
) -> None:
    fa.on("ADD", times=1, **BUSY)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics = Metrics()
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(metrics))
    observers: Sequence[Observer] = (
        Broken(),  # guarded: logged, and the others still hear of the retry
        OpenTelemetryObserver(tracer_provider),
        OpenTelemetryMetrics(meter_provider),
        metrics,
    )
    async with plugin(dirs, namespaces, FAST, *observers) as cni:
        await cni.set_up_pod(pod(namespaces))

    [operation] = [s for s in exporter.get_finished_spans() if s.name == "cni set_up_pod"]
    [event] = operation.events
    assert event.name == "cni.retry"
    assert dict(event.attributes or {}) == {
        "cni.operation": "set_up_pod",
        "cni.retry.attempt": 1,
        "cni.retry.delay": 0.01,
        "error.type": "PodNetworkError",
        "cni.error.code": 11,
    }
    adds = [s for s in exporter.get_finished_spans() if s.name == "cni ADD fa"]
    assert len(adds) == 2 and all(s.parent is not None for s in adds)
    assert {s.parent.span_id for s in adds if s.parent} == {operation.context.span_id}

    data = reader.get_metrics_data()
    assert data is not None
    retries = [
        (dict(point.attributes or {}), point.value)
        for resource in data.resource_metrics
        for scoped in resource.scope_metrics
        for metric in scoped.metrics
        if metric.name == "cni.operation.retries"
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    ]
    assert retries == [({"cni.operation": "set_up_pod"}, 1)]
    meter_provider.shutdown()

    assert metrics.snapshot().operations[0].retries == 1
    text = generate_latest(registry).decode()
    assert 'cni_async_operation_retries_total{operation="set_up_pod"} 1.0' in text.splitlines()
