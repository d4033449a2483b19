"""The documentation's examples (``docs/examples/*.py``), run against fake plugins.

Each example is a real program; here it is imported and its functions are awaited on both anyio
backends, with the directories pointing at a test's fakes and each pod's namespace made by the
test (``lo`` is brought up inside it). Each is also run once as a script, the way a reader would
run it, with the directories passed through the environment. The checks are the guarantees
each example illustrates: every ADD is followed by a DEL of the same container, nothing stays
in the cache, no plugin process survives a cancellation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from cni_async import CNIPlugin, PluginError, PodNetwork, PodNetworkError

from ..support.examples import EXAMPLES, ROOT, load, podnet
from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist
from ..support.procs import alive, children

pytestmark = pytest.mark.privileged

ALL_EXAMPLES = sorted(p.stem for p in EXAMPLES.glob("*.py"))


@pytest.fixture
def fake(dirs: dict[str, Path]) -> FakePlugin:
    """A fake plugin ``fa`` and the network ``podnet`` that uses it (the default network)."""
    return podnet(dirs)


def args(dirs: dict[str, Path]) -> dict[str, Any]:
    return {"conf_dir": str(dirs["conf"]), "bin_dirs": [str(dirs["bin"])]}


def verbs(fake: FakePlugin) -> dict[str, list[str]]:
    """ADD, CHECK and DEL runs of ``fake``, by container, in order."""
    seen: dict[str, list[str]] = {}
    for call in fake.calls():
        if call["command"] in ("ADD", "CHECK", "DEL"):
            seen.setdefault(call["env"]["CNI_CONTAINERID"], []).append(call["command"])
    return seen


def assert_nothing_left(dirs: dict[str, Path]) -> None:
    for sub in ("results", "cni_async-intents"):
        path = dirs["cache"] / sub
        assert not path.exists() or os.listdir(path) == [], f"{sub}: {os.listdir(path)}"
    assert children() == []


def assert_every_add_deleted(fake: FakePlugin) -> None:
    for container, commands in verbs(fake).items():
        assert commands.count("ADD") >= 1, (container, commands)
        assert commands[-1] == "DEL", (container, commands)
        assert commands.count("DEL") >= commands.count("ADD"), (container, commands)


def test_every_example_is_tested() -> None:
    """A new example needs a script run below (and tests of its own) and a page to show it."""
    assert sorted(SCRIPT_RUNS) == ALL_EXAMPLES
    pages = "".join(p.read_text() for p in EXAMPLES.parent.glob("*.md"))
    for name in ALL_EXAMPLES:
        assert f'--8<-- "docs/examples/{name}.py"' in pages, f"{name}.py is in no page"


def test_benchmark_plots_are_current() -> None:
    """``docs/assets`` holds exact copies of the plots the benchmark page shows."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    plots = sorted((ROOT / "docs" / "assets").glob("*.png"))
    assert plots
    for plot in plots:
        assert f"assets/{plot.name}" in page
        source = ROOT / "benchmarks" / "results" / plot.name
        assert plot.read_bytes() == source.read_bytes(), f"copy {source} to {plot}"


def test_api_reference_covers_all() -> None:
    """The API page is generated from ``cni_async.__all__`` and ``cni_async.libcni.__all__``,
    group by group; a name is documented once, under the namespace that lists it."""
    import cni_async
    import cni_async.libcni

    hooks = load("hooks", ROOT / "docs")
    groups = hooks.api_groups()
    assert [name for _, names in groups for name in names] == list(cni_async.__all__)
    libcni = hooks.api_groups(hooks.LIBCNI)
    assert [name for _, names in libcni for name in names] == list(cni_async.libcni.__all__)
    page = hooks.api_markdown()
    for name in cni_async.__all__:
        assert (f"::: cni_async.{name}\n" in page) == (name != "__version__")
    for name in cni_async.libcni.__all__:
        assert f"::: cni_async.libcni.{name}\n" in page
        assert f"::: cni_async.{name}\n" not in page
        assert getattr(cni_async, name) is getattr(cni_async.libcni, name)  # the flat alias


def test_a_sphinx_role_fails_the_docs_build() -> None:
    """Cross-references are mkdocstrings' (links); a Sphinx role would render as plain code."""
    from mkdocs.exceptions import PluginError

    hooks = load("hooks", ROOT / "docs")
    page = type("Page", (), {"file": type("File", (), {"src_path": "api.md"})()})()
    html = "<p>see <code>x</code></p>"
    assert hooks.on_page_content(html, page) == html
    with pytest.raises(PluginError, match="Sphinx role"):
        hooks.on_page_content("<p>see :class:<code>~cni_async.CNIPlugin</code></p>", page)


@pytest.mark.anyio
async def test_quickstart(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    quickstart = load("quickstart")
    addresses = await quickstart.main(
        **args(dirs), netns=net.netns("pod1"), cache_dir=str(dirs["cache"])
    )
    assert addresses == ["10.99.0.2/24"]
    assert verbs(fake) == {"4f1c0a9e7b2d": ["ADD", "CHECK", "DEL"]}
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_deadline(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    deadline = load("deadline")
    netns = net.netns("pod1")
    fake.on("ADD", sleep=60)
    started = time.monotonic()
    attached = await deadline.main(
        **args(dirs), netns=netns, cache_dir=str(dirs["cache"]), deadline=0.5
    )
    assert attached is False
    assert time.monotonic() - started < 10  # the hung plugin was stopped, not waited for
    assert verbs(fake) == {"4f1c0a9e7b2d": ["ADD", "DEL"]}
    [add] = fake.calls("ADD")
    assert not alive(add["pid"])
    assert_nothing_left(dirs)

    # move_on_after: the same, quietly.
    async with CNIPlugin(**args(dirs), cache_dir=str(dirs["cache"])) as cni:
        pod = PodNetwork("web", "default", "other-pod", "uid", netns)
        assert await deadline.set_up_or_give_up(cni, pod, 0.5) is None
        fake.on("ADD")
        [result] = await deadline.set_up_or_give_up(cni, pod, 30)
        assert result.result.ips[0].address == "10.99.0.2/24"
        await cni.tear_down_pod(pod)
    assert verbs(fake)["other-pod"] == ["ADD", "DEL", "ADD", "DEL"]
    assert_nothing_left(dirs)

    # And with a deadline long enough, the pod is attached and then torn down.
    assert await deadline.main(**args(dirs), netns=netns, cache_dir=str(dirs["cache"])) is True


@pytest.mark.anyio
async def test_task_group_success(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    task_group = load("task_group")
    paths = [net.netns(f"pod{i}") for i in range(3)]
    ok = await task_group.main(**args(dirs), netns_paths=paths, cache_dir=str(dirs["cache"]))
    assert ok is True
    assert verbs(fake) == {f"sandbox-{i}": ["ADD", "DEL"] for i in range(3)}
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_task_group_failure_cancels_the_others(
    dirs: dict[str, Path], net: Sandbox, fake: FakePlugin
) -> None:
    task_group = load("task_group")
    paths = [net.netns(f"pod{i}") for i in range(3)]
    fake.on("ADD:sandbox-1", sleep=60)  # still running when sandbox-2 fails: cancelled
    fake.on("ADD:sandbox-2", sleep=1.5, stdout={"code": 11, "msg": "try again later"}, exit=1)
    started = time.monotonic()
    ok = await task_group.main(**args(dirs), netns_paths=paths, cache_dir=str(dirs["cache"]))
    assert ok is False
    assert time.monotonic() - started < 20
    seen = verbs(fake)
    assert set(seen) == {"sandbox-0", "sandbox-1", "sandbox-2"}
    assert_every_add_deleted(fake)
    assert not any(alive(c["pid"]) for c in fake.calls("ADD"))
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_task_group_reports_the_failure(
    dirs: dict[str, Path], net: Sandbox, fake: FakePlugin
) -> None:
    """``set_up_all`` itself raises the group, after undoing what succeeded."""
    task_group = load("task_group")
    fake.on("ADD:bad", stdout={"code": 11, "msg": "try again later"}, exit=1, sleep=1.0)
    pods = [
        PodNetwork("good", "ns", "good", "u1", net.netns("good")),
        PodNetwork("bad", "ns", "bad", "u2", net.netns("bad")),
    ]
    async with CNIPlugin(**args(dirs), cache_dir=str(dirs["cache"])) as cni:
        with pytest.raises(ExceptionGroup) as info:
            await task_group.set_up_all(cni, pods)
    [error] = info.value.exceptions
    assert isinstance(error, PodNetworkError) and error.code == 11
    assert verbs(fake) == {"good": ["ADD", "DEL"], "bad": ["ADD", "DEL"]}
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_shielded_cleanup(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    shielded_cleanup = load("shielded_cleanup")
    fake.on("DEL", sleep=0.5)  # the teardown takes a while, after the cancellation
    detached = await shielded_cleanup.main(
        **args(dirs), netns=net.netns("pod1"), cache_dir=str(dirs["cache"]), lifetime=0.5
    )
    assert detached is True
    assert verbs(fake) == {"4f1c0a9e7b2d": ["ADD", "DEL"]}
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_shielded_cleanup_under_an_expired_deadline(
    dirs: dict[str, Path], net: Sandbox, fake: FakePlugin
) -> None:
    """The teardown runs even though the scope around it is already cancelled."""
    shielded_cleanup = load("shielded_cleanup")
    pod = PodNetwork("web", "ns", "c1", "u1", net.netns("pod1"))
    async with CNIPlugin(**args(dirs), cache_dir=str(dirs["cache"])) as cni:
        with anyio.CancelScope() as scope:
            async with shielded_cleanup.attached(cni, pod):
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
    assert verbs(fake) == {"c1": ["ADD", "DEL"]}
    assert_nothing_left(dirs)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin, backend: str) -> None:
    blocking = load("blocking")
    fake.on("ADD", sleep=0.5)
    paths = [net.netns(f"pod{i}") for i in range(3)]
    started = time.monotonic()
    addresses = blocking.main(
        **args(dirs), netns_paths=paths, cache_dir=str(dirs["cache"]), backend=backend
    )
    assert addresses == {f"sandbox-{i}": ["10.99.0.2/24"] for i in range(3)}
    assert verbs(fake) == {f"sandbox-{i}": ["ADD", "DEL"] for i in range(3)}
    starts = sorted(c["time"] for c in fake.calls("ADD"))
    assert starts[-1] - starts[0] < 1.0  # from three threads at once, not one after the other
    assert time.monotonic() - started < 30
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_config_events_waits_for_a_network(dirs: dict[str, Path]) -> None:
    config_events = load("config_events")
    FakePlugin(dirs["bin"], "fa")
    name: list[str] = []

    async def run() -> None:
        name.append(await config_events.main(**args(dirs), cache_dir=str(dirs["cache"])))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.sleep(0.5)
            assert name == []  # not ready: no configuration yet
            write_conflist(dirs["conf"], "latenet", [{"type": "fa"}])
    assert name == ["latenet"]


@pytest.mark.anyio
async def test_config_events_times_out(dirs: dict[str, Path]) -> None:
    config_events = load("config_events")
    with pytest.raises(TimeoutError):
        await config_events.main(**args(dirs), cache_dir=str(dirs["cache"]), timeout=0.5)


@pytest.mark.anyio
async def test_engine(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    engine = load("engine")
    netns = net.netns("pod1")
    name = await engine.main(**args(dirs), netns=netns, cache_dir=str(dirs["cache"]))
    assert name == "podnet"
    assert verbs(fake) == {"engine-example": ["ADD", "CHECK", "DEL"]}
    assert_nothing_left(dirs)

    fake.on("ADD", stdout={"code": 7, "msg": "bad config"}, exit=1)
    with pytest.raises(PluginError) as info:
        await engine.main(**args(dirs), netns=netns, cache_dir=str(dirs["cache"]))
    assert info.value.code == 7
    assert verbs(fake)["engine-example"][-2:] == ["ADD", "DEL"]
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_metrics(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    snapshot = await load("metrics").main(
        **args(dirs), netns=net.netns("pod1"), cache_dir=str(dirs["cache"])
    )
    ops = {op.kind: op.count for op in snapshot.operations}
    assert ops == {"set_up_pod": 1, "get_pod_network_status": 1, "tear_down_pod": 1}
    runs = {(r.verb, r.plugin): r.count for r in snapshot.plugin_runs}
    assert runs[("ADD", "fa")] == runs[("CHECK", "fa")] == runs[("DEL", "fa")] == 1
    assert snapshot.in_flight == 0 and snapshot.reloads == 1
    assert_nothing_left(dirs)


@pytest.mark.anyio
async def test_observer(
    dirs: dict[str, Path], net: Sandbox, fake: FakePlugin, caplog: pytest.LogCaptureFixture
) -> None:
    fake.on("ADD", sleep=0.3)
    slow = await load("observer").main(
        **args(dirs), netns=net.netns("pod1"), cache_dir=str(dirs["cache"]), threshold=0.25
    )
    assert [(verb, plugin) for verb, plugin, _ in slow] == [("ADD", "fa")]
    assert any("ADD fa on podnet took" in r.getMessage() for r in caplog.records)
    assert_every_add_deleted(fake)


@pytest.mark.anyio
async def test_tracing(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    await load("tracing").main(
        **args(dirs), netns=net.netns("pod1"), cache_dir=str(dirs["cache"]), exporter=exporter
    )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    outer, setup, add = spans["RunPodSandbox"], spans["cni set_up_pod"], spans["cni ADD fa"]
    assert setup.parent is not None and add.parent is not None
    assert setup.parent.span_id == outer.context.span_id
    assert add.parent.span_id == setup.context.span_id
    teardown, delete = spans["cni tear_down_pod"], spans["cni DEL fa"]
    assert delete.parent is not None and delete.parent.span_id == teardown.context.span_id
    (call,) = fake.calls("ADD")
    assert call["env"]["TRACEPARENT"].split("-")[2] == f"{add.context.span_id:016x}"
    assert_nothing_left(dirs)


SCRIPT_RUNS = {
    "engine": ({"NETWORK": "podnet"}, "cached attachments: [('podnet', 'eth0')]"),
    "quickstart": ({}, "podnet on eth0: ['10.99.0.2/24']"),
    "deadline": ({"DEADLINE": "20"}, "attached: ['10.99.0.2/24']"),
    "task_group": ({}, "sandbox-1 ['10.99.0.2/24']"),
    "shielded_cleanup": ({"LIFETIME": "0.2"}, "detached; attachments left: 0"),
    "blocking": ({}, "'sandbox-1': ['10.99.0.2/24']"),
    "config_events": ({"TIMEOUT": "20"}, "ready; the default network is podnet"),
    "metrics": ({}, "set_up_pod               1 calls, 0 failed"),
    "observer": ({"SLOW": "0"}, "slow: ADD fa"),
    "tracing": ({}, '"name": "cni ADD fa"'),
    "otel_metrics": ({}, '"name": "cni.operation.duration"'),
    "prometheus": ({}, 'cni_async_operation_duration_seconds_count{operation="set_up_pod"} 1.0'),
}


@pytest.mark.parametrize("name", sorted(SCRIPT_RUNS))
def test_runs_as_a_script(dirs: dict[str, Path], net: Sandbox, fake: FakePlugin, name: str) -> None:
    """``python docs/examples/<name>.py``, with the directories from the environment."""
    extra, expected = SCRIPT_RUNS[name]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NETCONFPATH": str(dirs["conf"]),
        "CNI_PATH": str(dirs["bin"]),
        "CNI_CACHE_DIR": str(dirs["cache"]),
        "POD_NETNS": ":".join(net.netns(f"pod{i}") for i in range(2)),
        **extra,
    }
    if name not in ("task_group", "blocking"):
        env["POD_NETNS"] = env["POD_NETNS"].split(":")[0]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout, done.stdout
    if name != "config_events":
        assert_every_add_deleted(fake)
    assert_nothing_left(dirs)
