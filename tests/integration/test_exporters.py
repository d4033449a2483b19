"""Metrics exporters: OpenTelemetry instruments and the Prometheus collector, fed by real
operations on fake plugins, and their documentation examples."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cni_async import (
    DEFAULT_BUCKETS,
    CNIPlugin,
    Metrics,
    NetAttachment,
    Observer,
    OpenTelemetryMetrics,
    PluginNotAvailable,
    PodNetwork,
    PodNetworkError,
    PrometheusCollector,
    RuntimeConfig,
)

from ..support import examples
from ..support.examples import EXAMPLES, load
from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, observed_plugin, two_networks, write_conflist
from ..support.procs import children

pytestmark = pytest.mark.anyio

SECRET = "annotation-value-5be1"
# Everything an attribute or a label may be called: nothing about the pod itself.
OTEL_ATTRIBUTES = {
    "cni.operation",
    "cni.command",
    "cni.plugin",
    "cni.network",
    "cni.cancelled",
    "error.type",
    "cni.error.code",
}


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
        runtime_config={n: RuntimeConfig(pod_annotations={"secret": SECRET}) for n in networks},
    )


async def churn(
    cni: CNIPlugin, dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> PodNetwork:
    """One pod set up, checked and torn down; a second one's set-up failing with code 11 on
    ``netb`` (and rolled back); a readiness check; then a reload that adds a network and finds
    an invalid file. Returns the first pod."""
    p1 = pod(net, "neta", "netb")
    await cni.set_up_pod(p1)
    await cni.get_pod_network_status(p1)
    await cni.tear_down_pod(p1)
    fakes["fb"].on("ADD", stdout={"code": 11, "msg": "try again"}, exit=1)
    with pytest.raises(PodNetworkError) as info:
        await cni.set_up_pod(pod(net, "neta", "netb", name="p2"))
    assert info.value.code == 11
    await cni.status()
    write_conflist(dirs["conf"], "netc", [{"type": "fa"}], filename="30-netc.conflist")
    (dirs["conf"] / "40-bad.conflist").write_text("{")
    await cni.reload()
    return p1


# -- OpenTelemetry ----------------------------------------------------------------------------


Points = dict[str, list[tuple[dict[str, Any], Any]]]


def points(reader: InMemoryMetricReader, scope: str = "cni_async") -> Points:
    """Every data point of ``scope`` the reader collects now, by instrument name."""
    data = reader.get_metrics_data()
    assert data is not None
    return points_of(data, scope)


def points_of(data: MetricsData, scope: str = "cni_async") -> Points:
    """Every data point of ``scope`` in ``data``, by instrument name, with its attributes."""
    found: Points = {}
    for resource in data.resource_metrics:
        for scoped in resource.scope_metrics:
            if scoped.scope.name != scope:
                continue
            for metric in scoped.metrics:
                found.setdefault(metric.name, []).extend(
                    (dict(p.attributes or {}), p) for p in metric.data.data_points
                )
    return found


def histogram_counts(found: Points, name: str) -> dict[frozenset[tuple[str, Any]], int]:
    counts: dict[frozenset[tuple[str, Any]], int] = {}
    for attributes, point in found.get(name, []):
        assert isinstance(point, HistogramDataPoint)
        counts[frozenset(attributes.items())] = point.count
    return counts


def values(found: Points, name: str) -> dict[frozenset[tuple[str, Any]], float]:
    result: dict[frozenset[tuple[str, Any]], float] = {}
    for attributes, point in found.get(name, []):
        assert isinstance(point, NumberDataPoint)
        result[frozenset(attributes.items())] = point.value
    return result


def key(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset({k.replace("_", "."): v for k, v in attributes.items()}.items())


def assert_private(found: Points, *secrets: str) -> None:
    for name, recorded in found.items():
        for attributes, _ in recorded:
            assert set(attributes) <= OTEL_ATTRIBUTES, (name, attributes)
            for value in attributes.values():
                assert not any(s in str(value) for s in secrets), (name, attributes)


@pytest.mark.privileged
async def test_otel_metrics_of_pods_errors_rollbacks_and_reloads(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = Metrics()  # the same events, counted in memory, to compare with
    async with plugin(dirs, OpenTelemetryMetrics(provider), metrics) as cni:
        p1 = await churn(cni, dirs, fakes, net)
    found = points(reader)
    provider.shutdown()

    ops = histogram_counts(found, "cni.operation.duration")
    failed = key(cni_operation="set_up_pod", error_type="PodNetworkError", cni_error_code=11)
    assert ops == {
        key(cni_operation="set_up_pod"): 1,
        failed: 1,
        key(cni_operation="get_pod_network_status"): 1,
        key(cni_operation="tear_down_pod"): 1,
        key(cni_operation="status"): 1,
    }
    for _, point in found["cni.operation.duration"]:
        assert point.explicit_bounds == DEFAULT_BUCKETS  # the advice reached the SDK
        assert 0 < point.min <= point.max <= point.sum
        assert sum(point.bucket_counts) == point.count
    assert set(values(found, "cni.operation.active").values()) == {0}

    runs = histogram_counts(found, "cni.plugin.duration")
    ok_fb = key(cni_command="ADD", cni_plugin="fb", cni_network="netb")
    add_fa = key(cni_command="ADD", cni_plugin="fa", cni_network="neta")
    # p2's ADD of fa may be cancelled by fb's failure, or finish first (then it is rolled back)
    assert runs[add_fa] + runs.get(add_fa | {("cni.cancelled", True)}, 0) == 2
    assert runs[ok_fb] == 1
    assert runs[ok_fb | {("error.type", "TryAgainLater"), ("cni.error.code", 11)}] == 1
    assert runs[key(cni_command="DEL", cni_plugin="fb", cni_network="netb")] == 2
    assert runs[key(cni_command="CHECK", cni_plugin="fa", cni_network="neta")] == 1
    assert runs[key(cni_command="STATUS", cni_plugin="fa", cni_network="neta")] == 1
    assert runs[key(cni_command="VERSION", cni_plugin="fa")] >= 1  # a probe: no network
    # the same runs as the in-memory observer saw, verb by verb and plugin by plugin
    by_run: dict[tuple[str, str], int] = {}
    for attributes, count in runs.items():
        names = dict(attributes)
        by_run[names["cni.command"], names["cni.plugin"]] = (
            by_run.get((names["cni.command"], names["cni.plugin"]), 0) + count
        )
    assert by_run == {(r.verb, r.plugin): r.count for r in metrics.snapshot().plugin_runs}

    assert values(found, "cni.plugin.errors") == {
        ok_fb | {("error.type", "TryAgainLater"), ("cni.error.code", 11)}: 1
    }
    assert values(found, "cni.rollbacks") == {key(): 1}
    assert "cni.rollback.failures" not in found  # the rollback was clean
    assert values(found, "cni.config.reloads") == {key(): 2}
    assert values(found, "cni.config.networks") == {key(): 3}
    assert values(found, "cni.config.invalid_files") == {key(): 1}
    assert_private(found, p1.name, p1.namespace, p1.id, p1.uid, "p2", SECRET)


@pytest.mark.privileged
async def test_otel_metrics_of_a_cancelled_set_up(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    fakes["fa"].on("ADD", sleep=30)
    async with plugin(dirs, OpenTelemetryMetrics(provider)) as cni, anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, pod(net, "neta"))
        with anyio.fail_after(10):
            while not fakes["fa"].calls("ADD"):
                await anyio.sleep(0.02)
        active = values(points(reader), "cni.operation.active")
        assert active == {key(cni_operation="set_up_pod"): 1}
        tg.cancel_scope.cancel()
    found = points(reader)
    provider.shutdown()
    assert values(found, "cni.operation.active") == {key(cni_operation="set_up_pod"): 0}
    cancelled = key(cni_operation="set_up_pod", cni_cancelled=True)
    assert histogram_counts(found, "cni.operation.duration") == {cancelled: 1}
    runs = histogram_counts(found, "cni.plugin.duration")
    add = key(cni_command="ADD", cni_plugin="fa", cni_network="neta")
    assert runs[add | {("cni.cancelled", True)}] == 1
    assert runs[key(cni_command="DEL", cni_plugin="fa", cni_network="neta")] == 1  # rollback
    assert "cni.plugin.errors" not in found  # a cancellation is not an error
    assert values(found, "cni.rollbacks") == {key(): 1}


async def test_otel_metrics_of_a_failed_status_and_a_reload(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    """No namespace needed: STATUS fails with code 50, then the configuration changes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    fakes["fa"].on("STATUS", stdout={"code": 50, "msg": "no IPAM yet"}, exit=1)
    async with plugin(dirs, OpenTelemetryMetrics(provider)) as cni:
        with pytest.raises(PluginNotAvailable):
            await cni.status()
        (dirs["conf"] / "20-netb.conflist").unlink()
        await cni.reload()
    found = points(reader)
    provider.shutdown()
    failed = {("error.type", "PluginNotAvailable"), ("cni.error.code", 50)}
    assert histogram_counts(found, "cni.operation.duration") == {
        key(cni_operation="status") | failed: 1
    }
    status = key(cni_command="STATUS", cni_plugin="fa", cni_network="neta")
    assert histogram_counts(found, "cni.plugin.duration")[status | failed] == 1
    assert values(found, "cni.plugin.errors") == {status | failed: 1}
    assert values(found, "cni.config.reloads") == {key(): 2}
    assert values(found, "cni.config.networks") == {key(): 1}
    assert values(found, "cni.config.invalid_files") == {key(): 0}
    assert_private(found)


async def test_otel_metrics_on_a_meter_of_ones_own(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observer = OpenTelemetryMetrics(meter=provider.get_meter("my-runtime"), buckets=(0.5, 5.0))
    async with plugin(dirs, observer) as cni:
        await cni.status()
    assert points(reader, "cni_async") == {}
    found = points(reader, "my-runtime")
    provider.shutdown()
    [(attributes, point)] = found["cni.operation.duration"]
    assert attributes == {"cni.operation": "status"}
    assert point.explicit_bounds == (0.5, 5.0)
    assert point.count == 1


async def test_otel_metrics_scope_is_the_library(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    import cni_async

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with plugin(dirs, OpenTelemetryMetrics(provider)) as cni:
        await cni.status()
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    [scoped] = [s for r in data.resource_metrics for s in r.scope_metrics]
    assert (scoped.scope.name, scoped.scope.version) == ("cni_async", cni_async.__version__)
    units = {m.name: m.unit for m in scoped.metrics}
    assert units["cni.operation.duration"] == units["cni.plugin.duration"] == "s"


# -- Prometheus -------------------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> tuple[str, Samples]:
    """The exposition text of ``registry`` and its samples, by name and labels."""
    text = generate_latest(registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return text, samples


def labels(**names: str) -> frozenset[tuple[str, str]]:
    return frozenset(names.items())


def registry_of(metrics: Metrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(metrics))
    return registry


@pytest.mark.privileged
async def test_prometheus_exposition_of_pods_errors_rollbacks_and_reloads(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    metrics = Metrics()
    registry = registry_of(metrics)
    async with plugin(dirs, metrics) as cni:
        p1 = await churn(cni, dirs, fakes, net)
    text, samples = scrape(registry)
    snap = metrics.snapshot()

    # exact lines: names, suffixes and values as Prometheus reads them (the order of several
    # labels is prometheus_client's: checked on the parsed samples below)
    for line in (
        "# TYPE cni_async_operation_duration_seconds histogram",
        'cni_async_operation_duration_seconds_count{operation="set_up_pod"} 2.0',
        'cni_async_operation_duration_seconds_count{operation="tear_down_pod"} 1.0',
        'cni_async_operation_cancellations_total{operation="set_up_pod"} 0.0',
        'cni_async_operations_in_flight{operation="set_up_pod"} 0.0',
        "# TYPE cni_async_config_reloads_total counter",
        "cni_async_config_reloads_total 2.0",
        "cni_async_config_networks 3.0",
        "cni_async_config_invalid_files 1.0",
        "cni_async_rollbacks_total 1.0",
        "cni_async_rollback_failures_total 0.0",
    ):
        assert line in text.splitlines(), line

    # every histogram: the observer's buckets, cumulative, ending with the count; the sum
    for op in snap.operations:
        name = "cni_async_operation_duration_seconds"
        bucket = {
            le: samples[f"{name}_bucket", labels(operation=op.kind, le=le)]
            for le in [*(str(b) for b in DEFAULT_BUCKETS), "+Inf"]
        }
        assert list(bucket.values()) == list(op.latency.counts)
        assert bucket["+Inf"] == samples[f"{name}_count", labels(operation=op.kind)] == op.count
        assert samples[f"{name}_sum", labels(operation=op.kind)] == pytest.approx(op.latency.sum_s)
    for run in snap.plugin_runs:
        name = "cni_async_plugin_run_duration_seconds"
        run_labels = labels(verb=run.verb, plugin=run.plugin)
        assert samples[f"{name}_count", run_labels] == run.count
        assert samples[f"{name}_bucket", run_labels | {("le", "+Inf")}] == run.count
        assert samples[f"{name}_sum", run_labels] == pytest.approx(run.latency.sum_s)
    setup = labels(operation="set_up_pod")
    assert (
        samples["cni_async_operation_failures_total", setup | {("error", "PodNetworkError")}] == 1
    )
    count = "cni_async_plugin_run_duration_seconds_count"
    assert samples[count, labels(verb="ADD", plugin="fb")] == 2
    assert samples[count, labels(verb="DEL", plugin="fa")] == 2
    errors = {k: v for k, v in samples.items() if k[0] == "cni_async_plugin_errors_total"}
    assert errors == {
        (
            "cni_async_plugin_errors_total",
            labels(verb="ADD", plugin="fb", code="11", error="TryAgainLater"),
        ): 1
    }
    assert all(name.startswith("cni_async_") for name, _ in samples)
    for secret in (p1.name, p1.id, p1.uid, "p2", SECRET):
        assert f'"{secret}"' not in text and secret not in "".join(
            v for _, ls in samples for _, v in ls
        )


@pytest.mark.privileged
async def test_prometheus_exposition_of_a_cancelled_set_up(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    metrics = Metrics()
    registry = registry_of(metrics)
    fakes["fa"].on("ADD", sleep=30)
    async with plugin(dirs, metrics) as cni, anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, pod(net, "neta"))
        with anyio.fail_after(10):
            while not fakes["fa"].calls("ADD"):
                await anyio.sleep(0.02)
        _, samples = scrape(registry)
        assert samples["cni_async_operations_in_flight", labels(operation="set_up_pod")] == 1
        assert ("cni_async_operation_duration_seconds_count", labels(operation="set_up_pod")) in (
            samples
        )  # a kind seen in flight has its (empty) histogram already
        tg.cancel_scope.cancel()
    _, samples = scrape(registry)
    setup = labels(operation="set_up_pod")
    assert samples["cni_async_operations_in_flight", setup] == 0
    assert samples["cni_async_operation_cancellations_total", setup] == 1
    assert samples["cni_async_operation_duration_seconds_count", setup] == 1
    add = labels(verb="ADD", plugin="fa")
    assert samples["cni_async_plugin_run_cancellations_total", add] == 1
    assert not any(name == "cni_async_plugin_errors_total" for name, _ in samples)
    assert not any(name == "cni_async_operation_failures_total" for name, _ in samples)
    assert samples["cni_async_rollbacks_total", labels()] == 1


async def test_prometheus_exposition_of_a_failed_status_and_a_reload(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    """No namespace needed: STATUS fails with code 50, then the configuration changes."""
    metrics = Metrics(buckets=(0.5, 5.0))
    registry = registry_of(metrics)
    fakes["fa"].on("STATUS", stdout={"code": 50, "msg": "no IPAM yet"}, exit=1)
    async with plugin(dirs, metrics) as cni:
        with pytest.raises(PluginNotAvailable):
            await cni.status()
        (dirs["conf"] / "20-netb.conflist").unlink()
        await cni.reload()
    text, samples = scrape(registry)
    status = labels(operation="status")
    assert samples["cni_async_operation_duration_seconds_count", status] == 1
    assert samples["cni_async_operation_failures_total", status | {("error", "PluginNotAvailable")}]
    run = labels(verb="STATUS", plugin="fa")
    assert (
        samples[
            "cni_async_plugin_errors_total",
            run | {("code", "50")} | {("error", "PluginNotAvailable")},
        ]
        == 1
    )
    les = sorted(
        dict(ls)["le"]
        for name, ls in samples
        if name == "cni_async_plugin_run_duration_seconds_bucket" and run <= ls
    )
    assert les == ["+Inf", "0.5", "5.0"]
    assert samples["cni_async_config_reloads_total", labels()] == 2
    assert samples["cni_async_config_networks", labels()] == 1
    assert "cni_async_config_invalid_files 0.0" in text.splitlines()


def test_prometheus_collector_before_anything_happened() -> None:
    registry = registry_of(Metrics())
    text, samples = scrape(registry)
    assert samples == {
        ("cni_async_config_reloads_total", labels()): 0,
        ("cni_async_config_networks", labels()): 0,
        ("cni_async_config_invalid_files", labels()): 0,
        ("cni_async_rollbacks_total", labels()): 0,
        ("cni_async_rollback_failures_total", labels()): 0,
    }
    assert "# TYPE cni_async_plugin_errors_total counter" in text
    # describe() names every series: a second collector on the registry is refused
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(PrometheusCollector(Metrics()))


def test_prometheus_collector_on_the_default_registry_with_openmetrics() -> None:
    """``REGISTRY`` describes collectors by collecting them; OpenMetrics checks units."""
    from prometheus_client import REGISTRY
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    collector = PrometheusCollector(Metrics())
    REGISTRY.register(collector)
    try:
        text = openmetrics(REGISTRY).decode()  # type: ignore[no-untyped-call]
    finally:
        REGISTRY.unregister(collector)
    assert "# UNIT cni_async_operation_duration_seconds seconds" in text
    assert "cni_async_config_reloads_total 0.0" in text


# -- without the extras -----------------------------------------------------------------------


def test_the_library_imports_without_the_extras() -> None:
    """``import cni_async`` needs neither extra; the exporters say which one is missing."""
    code = textwrap.dedent(
        """
        import sys

        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("opentelemetry", "prometheus_client"):
                    raise ImportError(f"no {name} here")
                return None

        sys.meta_path.insert(0, Missing())
        import cni_async

        assert not any(m.startswith(("opentelemetry", "prometheus_client")) for m in sys.modules)
        cni_async.Metrics().snapshot()
        for make, extra in (
            (lambda: cni_async.OpenTelemetryMetrics(), "otel"),
            (lambda: cni_async.PrometheusCollector(cni_async.Metrics()), "prometheus"),
        ):
            try:
                make()
            except ImportError as exc:
                assert f"cni_async[{extra}]" in str(exc), exc
            else:
                raise AssertionError(extra)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


# -- the documentation's examples -------------------------------------------------------------


@pytest.fixture
def podnet(dirs: dict[str, Path]) -> FakePlugin:
    """The examples' default network ``podnet`` on a fake plugin ``fa``."""
    return examples.podnet(dirs)


def example_args(dirs: dict[str, Path], net: Sandbox) -> dict[str, Any]:
    return {
        "conf_dir": str(dirs["conf"]),
        "bin_dirs": [str(dirs["bin"])],
        "netns": net.netns("pod1"),
        "cache_dir": str(dirs["cache"]),
    }


def assert_clean(dirs: dict[str, Path], fake: FakePlugin) -> None:
    assert [c["command"] for c in fake.calls() if c["command"] in ("ADD", "DEL")] == [
        "ADD",
        "DEL",
    ]
    assert not os.listdir(dirs["cache"] / "results")
    assert children() == []


class Collected(MetricExporter):
    """Keeps what it is given."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={}, preferred_aggregation={})
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


@pytest.mark.privileged
async def test_otel_metrics_example(
    dirs: dict[str, Path], net: Sandbox, podnet: FakePlugin
) -> None:
    exporter = Collected()
    await load("otel_metrics").main(**example_args(dirs, net), exporter=exporter)
    assert exporter.batches
    found = points_of(exporter.batches[-1])
    assert histogram_counts(found, "cni.operation.duration") == {
        key(cni_operation="set_up_pod"): 1,
        key(cni_operation="status"): 1,
        key(cni_operation="tear_down_pod"): 1,
    }
    runs = histogram_counts(found, "cni.plugin.duration")
    for command in ("ADD", "STATUS", "DEL"):
        assert runs[key(cni_command=command, cni_plugin="fa", cni_network="podnet")] == 1
    assert_clean(dirs, podnet)


@pytest.mark.privileged
async def test_prometheus_example(dirs: dict[str, Path], net: Sandbox, podnet: FakePlugin) -> None:
    text = await load("prometheus").main(**example_args(dirs, net))
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    count = "cni_async_operation_duration_seconds_count"
    assert samples[count, labels(operation="set_up_pod")] == 1
    assert samples[count, labels(operation="tear_down_pod")] == 1
    runs = "cni_async_plugin_run_duration_seconds_count"
    assert samples[runs, labels(verb="ADD", plugin="fa")] == 1
    assert samples[runs, labels(verb="DEL", plugin="fa")] == 1
    assert samples["cni_async_config_reloads_total", labels()] == 1
    assert_clean(dirs, podnet)


@pytest.mark.privileged
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("otel_metrics.py", '"name": "cni.operation.duration"'),
        ("prometheus.py", 'cni_async_operation_duration_seconds_count{operation="set_up_pod"} 1.0'),
    ],
)
def test_examples_run_as_scripts(
    dirs: dict[str, Path], net: Sandbox, podnet: FakePlugin, name: str, expected: str
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NETCONFPATH": str(dirs["conf"]),
        "CNI_PATH": str(dirs["bin"]),
        "CNI_CACHE_DIR": str(dirs["cache"]),
        "POD_NETNS": net.netns("pod1"),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout, done.stdout
    assert_clean(dirs, podnet)
