"""Observers: metrics, OpenTelemetry spans and TRACEPARENT, guarded hooks, logging hygiene."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cni_async import (
    BlockingCNIPlugin,
    CNIError,
    CNIPlugin,
    ConfigSnapshot,
    InvalidArgument,
    Metrics,
    NetAttachment,
    Observer,
    OpenTelemetryObserver,
    OperationInfo,
    PluginRunInfo,
    PodNetwork,
    PodNetworkError,
    RuntimeConfig,
)

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, observed_plugin, two_networks, write_conflist

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]

SECRET_ANNOTATION = "annotation-value-7f3a"
SECRET_ARG = "arg-value-91c2"


@pytest.fixture
def fakes(dirs: dict[str, Path]) -> dict[str, FakePlugin]:
    return two_networks(dirs)


def plugin(dirs: dict[str, Path], *observers: Observer, **kw: Any) -> CNIPlugin:
    plugin: CNIPlugin = observed_plugin(dirs, *observers, **kw)
    return plugin


def pod(net: Sandbox, *networks: str, name: str = "p1") -> PodNetwork:
    return PodNetwork(
        name,
        "ns1",
        f"{net.prefix}-{name}",
        f"uid-{name}",
        net.netns(name),
        [NetAttachment(n) for n in networks],
        runtime_config={
            n: RuntimeConfig(pod_annotations={"secret": SECRET_ANNOTATION}) for n in networks
        },
    )


async def test_metrics_count_operations_runs_errors_and_rollbacks(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    metrics = Metrics()
    async with plugin(dirs, metrics) as cni:
        p = pod(net, "neta", "netb")
        await cni.set_up_pod(p)
        await cni.get_pod_network_status(p)
        await cni.tear_down_pod(p)
        fakes["fb"].on("ADD", stdout={"code": 11, "msg": "try again"}, exit=1)
        with pytest.raises(PodNetworkError):
            await cni.set_up_pod(pod(net, "neta", "netb", name="p2"))
        await cni.status()

    snap = metrics.snapshot()
    ops = {o.kind: o for o in snap.operations}
    assert {k: (o.count, o.failed, o.cancelled) for k, o in ops.items()} == {
        "set_up_pod": (2, 1, 0),
        "get_pod_network_status": (1, 0, 0),
        "tear_down_pod": (1, 0, 0),
        "status": (1, 0, 0),
    }
    assert ops["set_up_pod"].errors == {"PodNetworkError": 1}
    assert ops["set_up_pod"].latency.count == 2
    assert ops["set_up_pod"].latency.counts == tuple(sorted(ops["set_up_pod"].latency.counts))
    assert 0 < ops["set_up_pod"].latency.max_s <= ops["set_up_pod"].latency.sum_s
    runs = {(r.verb, r.plugin): (r.count, r.failed) for r in snap.plugin_runs}
    # fa: ADD p1, ADD p2; fb: ADD p1, ADD p2 (failed); both: CHECK p1, DEL p1, DEL p2 (rollback)
    assert runs[("ADD", "fa")] == (2, 0)
    assert runs[("ADD", "fb")] == (2, 1)
    assert runs[("CHECK", "fa")] == runs[("CHECK", "fb")] == (1, 0)
    assert runs[("DEL", "fa")] == runs[("DEL", "fb")] == (2, 0)
    assert runs[("STATUS", "fa")] == (1, 0)
    assert ("VERSION", "fa") in runs
    assert [(e.verb, e.plugin, e.code, e.error, e.count) for e in snap.errors] == [
        ("ADD", "fb", 11, "TryAgainLater", 1)
    ]
    assert (snap.rollbacks, snap.rollback_failures) == (1, 0)
    assert (snap.reloads, snap.networks, snap.invalid_files) == (1, 2, 0)
    assert snap.in_flight == 0
    # the snapshot is ready for an exporter
    assert msgspec.json.decode(msgspec.json.encode(snap))["errors"][0]["code"] == 11


async def test_metrics_in_flight_and_cancelled(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    metrics = Metrics()
    fakes["fa"].on("ADD", sleep=30)
    async with plugin(dirs, metrics) as cni, anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, pod(net, "neta"))
        with anyio.fail_after(10):
            while not fakes["fa"].calls("ADD"):
                await anyio.sleep(0.02)
        snap = metrics.snapshot()
        assert snap.in_flight == 1
        assert [(o.kind, o.in_flight) for o in snap.operations] == [("set_up_pod", 1)]
        tg.cancel_scope.cancel()
    snap = metrics.snapshot()
    assert snap.in_flight == 0
    (op,) = snap.operations
    assert (op.count, op.failed, op.cancelled) == (1, 0, 1)
    runs = {(r.verb, r.plugin): (r.count, r.failed, r.cancelled) for r in snap.plugin_runs}
    assert runs[("ADD", "fa")] == (1, 0, 1)
    assert runs[("DEL", "fa")] == (1, 0, 0)  # the rollback
    assert snap.errors == ()
    assert snap.rollbacks == 1


async def test_garbage_output_is_a_failed_run_and_refused_calls_are_counted(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    """A plugin that exits 0 but prints no result failed its run; a call refused for its
    container ID is a failed operation, not an unseen one."""
    metrics = Metrics()
    async with plugin(dirs, metrics) as cni:
        fakes["fa"].on("ADD", stdout="not json")
        with pytest.raises(PodNetworkError):
            await cni.set_up_pod(pod(net, "neta"))
        with pytest.raises(InvalidArgument):
            await cni.tear_down_pod(PodNetwork("p", "ns1", "bad/id", "u", "/x"))
    snap = metrics.snapshot()
    runs = {(r.verb, r.plugin): (r.count, r.failed) for r in snap.plugin_runs}
    assert runs[("ADD", "fa")] == (1, 1)
    assert [(e.verb, e.plugin, e.error) for e in snap.errors] == [("ADD", "fa", "ProtocolError")]
    ops = {o.kind: (o.count, o.failed) for o in snap.operations}
    assert ops["tear_down_pod"] == (1, 1)


def test_metrics_buckets() -> None:
    for bad in ((1.0, 0.5), (0.1, math.nan, 1.0), (0.1, math.inf)):
        with pytest.raises(ValueError, match="finite, distinct and ascending"):
            Metrics(buckets=bad)
    m = Metrics(buckets=(0.5, 1.0))
    info = OperationInfo(kind="status")
    for _ in range(3):
        with m.operation(info):
            pass
    (op,) = m.snapshot().operations
    assert op.latency.bounds == (0.5, 1.0)
    assert op.latency.counts == (3, 3, 3)


class Recorder(Observer):
    """Records every call; optionally misbehaves."""

    def __init__(
        self, *, fail: str = "", swallow: bool = False, env: dict[str, object] | None = None
    ):
        self.fail = fail
        self.swallow = swallow
        self.env = env or {}
        self.seen: list[tuple[str, object]] = []

    @contextmanager
    def operation(self, info: OperationInfo) -> Iterator[None]:
        self.seen.append(("start", info))
        if self.fail == "enter":
            raise RuntimeError("observer bug on enter")
        try:
            yield
        except BaseException as exc:
            self.seen.append(("error", type(exc).__name__))
            if not self.swallow:
                raise
        finally:
            if self.fail == "exit":
                raise RuntimeError("observer bug on exit")

    @contextmanager
    def plugin_run(self, info: PluginRunInfo, env: MutableMapping[str, str]) -> Iterator[None]:
        self.seen.append(("run", info))
        for key, value in self.env.items():
            env[key] = value  # type: ignore[assignment]  # observers are other people's code
        yield

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        self.seen.append(("rolled_back", (info.kind, tuple(networks), len(errors))))
        if self.fail == "hook":
            raise RuntimeError("observer bug in a hook")

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        self.seen.append(("reloaded", snapshot.generation))
        if self.fail == "hook":
            raise RuntimeError("observer bug in a hook")


@pytest.mark.parametrize("fail", ["enter", "exit", "hook"])
async def test_a_broken_observer_breaks_nothing(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    net: Sandbox,
    fail: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, good = Recorder(fail=fail), Recorder()
    async with plugin(dirs, broken, good) as cni:
        p = pod(net, "neta")
        (result,) = await cni.set_up_pod(p)
        assert result.name == "neta"
        await cni.tear_down_pod(p)
        fakes["fa"].on("ADD", stdout={"code": 7, "msg": "bad"}, exit=1)
        with pytest.raises(PodNetworkError):
            await cni.set_up_pod(p)
    assert ("rolled_back", ("set_up_pod", ("neta",), 0)) in good.seen
    assert ("error", "PodNetworkError") in good.seen
    assert ("reloaded", 1) in good.seen
    assert any("observer" in r.message for r in caplog.records if r.name == "cni_async.observe")


async def test_an_observer_cannot_swallow_errors_or_change_cni_variables(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    sneaky = Recorder(
        swallow=True,
        env={
            "CNI_COMMAND": "DEL",
            "CNI_NETNS": "/elsewhere",
            "CNI_EXTRA": "x",
            "MY_VAR": "1",
            "PATH": "/opt/observer/bin",
            "A=B": "x",
            "NUL": "a\0b",
            "NUMBER": 5,
            "SURROGATE": "bad\ud800",  # no bytes for it: posix_spawn would fail every run
        },
    )
    async with plugin(dirs, sneaky) as cni:
        p = pod(net, "neta")
        await cni.set_up_pod(p)
        (add,) = fakes["fa"].calls("ADD")
        assert add["env"]["CNI_COMMAND"] == "ADD"
        assert add["env"]["CNI_NETNS"] == p.netns
        assert "CNI_EXTRA" not in add["env"]
        assert add["env"]["MY_VAR"] == "1"
        assert add["env"]["PATH"] == "/opt/observer/bin"  # not a CNI_ variable: may be changed
        assert not {"A", "NUL", "NUMBER", "SURROGATE"} & set(add["env"])
        fakes["fa"].on("CHECK", stdout={"code": 7, "msg": "bad"}, exit=1)
        with pytest.raises(PodNetworkError):
            await cni.get_pod_network_status(p)
        await cni.tear_down_pod(p)
    runs = [info for kind, info in sneaky.seen if kind == "run"]
    assert isinstance(runs[-1], PluginRunInfo)
    assert (runs[-1].verb, runs[-1].plugin, runs[-1].network) == ("DEL", "fa", "neta")
    assert (runs[-1].container_id, runs[-1].ifname) == (p.id, "eth0")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    assert ctx.trace_flags.sampled
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


async def test_spans_nest_and_plugins_get_their_traceparent(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    net: Sandbox,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("runtime")
    async with plugin(dirs, OpenTelemetryObserver(tracer_provider=provider)) as cni:
        p = pod(net, "neta", "netb")
        with tracer.start_as_current_span("RunPodSandbox") as outer:
            await cni.set_up_pod(p)
        await cni.tear_down_pod(p)

    finished = exporter.get_finished_spans()
    by_name = {s.name: s for s in finished}
    setup = by_name["cni set_up_pod"]
    assert setup.parent is not None
    assert setup.parent.span_id == outer.get_span_context().span_id
    assert setup.attributes is not None
    assert setup.attributes["k8s.pod.name"] == "p1"
    assert setup.attributes["container.id"] == p.id
    assert tuple(setup.attributes["cni.networks"]) == ("neta", "netb")  # type: ignore[arg-type]
    assert SECRET_ANNOTATION not in repr(dict(setup.attributes))
    for name, fake in (("fa", fakes["fa"]), ("fb", fakes["fb"])):
        add_spans = [s for s in finished if s.name == f"cni ADD {name}"]
        (add_span,) = add_spans
        assert add_span.parent is not None
        assert add_span.parent.span_id == setup.get_span_context().span_id  # type: ignore[union-attr]
        assert add_span.attributes is not None
        assert add_span.attributes["cni.command"] == "ADD"
        assert add_span.attributes["cni.ifname"] in ("eth0", "eth1")
        (call,) = fake.calls("ADD")
        assert call["env"]["TRACEPARENT"] == _traceparent(add_span)
        assert "TRACESTATE" not in call["env"]  # empty, so not sent
    teardown = by_name["cni tear_down_pod"]
    assert teardown.parent is None  # no span around it
    (del_call,) = fakes["fa"].calls("DEL")
    (del_span,) = [s for s in finished if s.name == "cni DEL fa"]
    assert del_call["env"]["TRACEPARENT"] == _traceparent(del_span)


async def test_failed_and_cancelled_spans(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    net: Sandbox,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    fakes["fa"].on("ADD", stdout={"code": 11, "msg": "busy"}, exit=1)
    fakes["fb"].on("ADD", sleep=30)
    async with plugin(dirs, OpenTelemetryObserver(tracer_provider=provider)) as cni:
        with pytest.raises(PodNetworkError):
            await cni.set_up_pod(pod(net, "neta"))
        with anyio.move_on_after(1):
            await cni.set_up_pod(pod(net, "netb", name="p2"))

    finished = exporter.get_finished_spans()
    (add_fa,) = [s for s in finished if s.name == "cni ADD fa"]
    assert add_fa.status.status_code is StatusCode.ERROR
    assert add_fa.attributes is not None
    assert add_fa.attributes["cni.error.code"] == 11
    assert [e.name for e in add_fa.events] == ["exception"]
    (add_fb,) = [s for s in finished if s.name == "cni ADD fb"]
    assert add_fb.attributes is not None
    assert add_fb.attributes["cni.cancelled"] is True
    assert add_fb.status.status_code is StatusCode.UNSET  # the caller's deadline, not an error
    assert add_fb.events == ()
    setups = [s for s in finished if s.name == "cni set_up_pod"]
    assert [s.status.status_code for s in setups] == [StatusCode.ERROR, StatusCode.UNSET]
    assert setups[1].attributes is not None and setups[1].attributes["cni.cancelled"] is True
    # the rollback DELs ran inside the set-up span, and succeeded
    dels = [s for s in finished if s.name.startswith("cni DEL")]
    assert len(dels) == 2
    assert all(d.status.status_code is not StatusCode.ERROR for d in dels)


async def test_reload_probes_make_no_root_spans(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with plugin(dirs, OpenTelemetryObserver(tracer_provider=provider)) as cni:
        await cni.reload()
        with provider.get_tracer("runtime").start_as_current_span("outer"):
            await cni.engine.get_version_info("fa")
    assert [s.name for s in exporter.get_finished_spans()] == ["cni VERSION fa", "outer"]


async def test_no_traceparent_without_a_tracer(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    async with plugin(dirs, OpenTelemetryObserver(tracer_provider=NoOpTracerProvider())) as cni:
        p = pod(net, "neta")
        await cni.set_up_pod(p)
        await cni.tear_down_pod(p)
    assert all("TRACEPARENT" not in c["env"] for c in fakes["fa"].calls())


async def test_logs_never_carry_annotations_or_args(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    net: Sandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cni_async")
    async with plugin(dirs, cni_args=[("SECRET", SECRET_ARG)]) as cni:
        p = pod(net, "neta", "netb")
        await cni.set_up_pod(p)
        await cni.get_pod_network_status(p)
        await cni.tear_down_pod(p)
        fakes["fb"].on("ADD", stdout={"code": 11, "msg": "busy"}, exit=1)
        with pytest.raises(PodNetworkError):
            await cni.set_up_pod(p)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cni_async")]
    assert any("set up pod ns1/p1" in m for m in messages)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for message in messages:
        assert SECRET_ANNOTATION not in message
        assert SECRET_ARG not in message


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_facade_spans_nest_under_the_calling_threads_span(
    dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    net: Sandbox,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    backend: str,
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("runtime")
    observer = OpenTelemetryObserver(tracer_provider=provider)
    with BlockingCNIPlugin(
        str(dirs["conf"]),
        [str(dirs["bin"])],
        str(dirs["cache"]),
        watch=False,
        observers=[observer],
        backend=backend,
    ) as cni:
        p = pod(net, "neta")
        with tracer.start_as_current_span("RunPodSandbox") as outer:
            cni.set_up_pod(p, timeout=30)
        cni.tear_down_pod(p, timeout=30)
    (setup,) = [s for s in exporter.get_finished_spans() if s.name == "cni set_up_pod"]
    assert setup.parent is not None
    assert setup.parent.span_id == outer.get_span_context().span_id
    (call,) = fakes["fa"].calls("ADD")
    assert call["env"]["TRACEPARENT"].split("-")[1] == f"{setup.context.trace_id:032x}"


async def test_metrics_follow_watched_reloads(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    metrics = Metrics()
    async with plugin(dirs, metrics, watch=True, debounce=0.01):
        assert (metrics.snapshot().reloads, metrics.snapshot().networks) == (1, 2)
        write_conflist(dirs["conf"], "netc", [{"type": "fa"}], filename="30-netc.conflist")
        (dirs["conf"] / "40-bad.conflist").write_text("{")
        with anyio.fail_after(10):
            while (snap := metrics.snapshot()).networks != 3 or snap.invalid_files != 1:
                await anyio.sleep(0.02)
        assert snap.reloads >= 2
