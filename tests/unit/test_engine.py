"""The protocol engine against fake plugins: stdin, env, chains, cache, verbs and errors."""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from cni_async import (
    CacheError,
    CheckNotSupported,
    CNIEngine,
    ConfigError,
    InvalidArgument,
    MultipleErrors,
    NetworkConfigList,
    PluginError,
    PluginNotAvailable,
    PluginNotFound,
    PluginTimeout,
    ProtocolError,
    RuntimeConf,
    VersionError,
    parse_conflist,
    parse_result,
)
from cni_async._testing import engine_module

from ..support.plugins import FakePlugin
from ..support.procs import children

pytestmark = pytest.mark.anyio


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def engine(bin_dir: Path, cache_dir: Path) -> CNIEngine:
    return CNIEngine([str(bin_dir)], cache_dir=str(cache_dir))


@pytest.fixture
def a(bin_dir: Path) -> FakePlugin:
    return FakePlugin(bin_dir, "plug-a")


@pytest.fixture
def b(bin_dir: Path) -> FakePlugin:
    return FakePlugin(bin_dir, "plug-b")


def netlist(version: str = "1.1.0", **extra: Any) -> NetworkConfigList:
    plugins = extra.pop(
        "plugins",
        [
            {"type": "plug-a", "capabilities": {"portMappings": True}, "ipam": {"x": 1}},
            {"type": "plug-b", "name": "second", "runtimeConfig": {"static": 1}},
        ],
    )
    body = {"cniVersion": version, "name": "net1", "plugins": plugins, **extra}
    return parse_conflist(json.dumps(body).encode())


RT = RuntimeConf(
    container_id="ctr1",
    netns="/run/netns/pod1",
    ifname="eth0",
    args=(("K8S_POD_NAME", "p"), ("IgnoreUnknown", "1")),
    capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80}], "other": 1},
)


async def test_add_chain_stdin_env_and_cache(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path, bin_dir: Path
) -> None:
    net = netlist()
    result = await engine.add_network_list(net, RT)
    assert result.cni_version == "1.1.0"

    [stdin_a] = a.stdins("ADD")
    assert stdin_a == {
        "cniVersion": "1.1.0",
        "name": "net1",
        "type": "plug-a",
        "capabilities": {"portMappings": True},
        "ipam": {"x": 1},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]},
    }
    [stdin_b] = b.stdins("ADD")
    # The list's name wins over the plugin's; no declared capability → static runtimeConfig kept.
    assert stdin_b["name"] == "net1"
    assert stdin_b["runtimeConfig"] == {"static": 1}
    assert stdin_b["prevResult"]["ips"][0]["address"] == "10.99.0.2/24"

    [call] = a.calls("ADD")
    env = call["env"]
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == "ctr1"
    assert env["CNI_NETNS"] == "/run/netns/pod1"
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_ARGS"] == "K8S_POD_NAME=p;IgnoreUnknown=1"
    assert env["CNI_PATH"] == str(bin_dir)

    entry = json.loads((cache_dir / "results" / "net1-ctr1-eth0").read_bytes())
    assert list(entry) == [
        "kind",
        "containerId",
        "config",
        "ifName",
        "networkName",
        "netns",
        "cniArgs",
        "capabilityArgs",
        "result",
    ]
    assert entry["kind"] == "cniCacheV1"
    assert base64.b64decode(entry["config"]) == net.bytes
    assert entry["cniArgs"] == [["K8S_POD_NAME", "p"], ["IgnoreUnknown", "1"]]
    assert entry["capabilityArgs"] == dict(RT.capability_args)
    assert entry["result"]["ips"] == [{"address": "10.99.0.2/24", "interface": 0}]
    assert oct(os.stat(cache_dir / "results" / "net1-ctr1-eth0").st_mode & 0o777) == "0o600"


async def test_add_failure_leaves_no_cache(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    b.on("ADD", stdout={"code": 7, "msg": "bad config"}, exit=1)
    with pytest.raises(PluginError) as info:
        await engine.add_network_list(netlist(), RT)
    err = info.value
    assert (err.code, err.plugin, err.verb, err.network) == (7, "plug-b", "ADD", "net1")
    assert str(err) == "network 'net1', plugin 'plug-b', ADD: bad config"
    assert not (cache_dir / "results" / "net1-ctr1-eth0").exists()


async def test_add_bad_result_is_protocol_error(engine: CNIEngine, a: FakePlugin) -> None:
    a.on("ADD", stdout="{not json")
    with pytest.raises(ProtocolError) as info:
        await engine.add_network_list(netlist(plugins=[{"type": "plug-a"}]), RT)
    assert info.value.plugin == "plug-a"


async def test_missing_plugin(engine: CNIEngine, a: FakePlugin) -> None:
    with pytest.raises(PluginNotFound) as info:
        await engine.add_network_list(netlist(plugins=[{"type": "nope"}]), RT)
    assert info.value.network == "net1"
    assert info.value.verb == "ADD"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("container_id", "../../etc", 4),
        ("container_id", "", 3),
        ("ifname", "a/b", 4),
        ("ifname", "x" * 16, 4),
        ("ifname", "..", 4),
        ("ifname", "eth 0", 4),
        ("ifname", "", 4),
    ],
)
@pytest.mark.parametrize("verb", ["add", "check", "del"])
async def test_names_validated_on_every_verb(
    engine: CNIEngine,
    a: FakePlugin,
    b: FakePlugin,
    cache_dir: Path,
    field: str,
    value: str,
    code: int,
    verb: str,
) -> None:
    rt = msgspec.structs.replace(
        RuntimeConf(container_id="c", netns="/x", ifname="eth0"), **{field: value}
    )
    with pytest.raises(InvalidArgument) as info:
        await getattr(engine, f"{verb}_network_list")(netlist(), rt)
    assert info.value.code == code
    assert a.calls() == [] and b.calls() == []
    assert not cache_dir.exists()


async def test_bad_network_name_and_args(engine: CNIEngine, a: FakePlugin) -> None:
    bad = parse_conflist(b'{"cniVersion":"1.1.0","name":"../x","plugins":[{"type":"plug-a"}]}')
    with pytest.raises(InvalidArgument) as info:
        await engine.del_network_list(bad, RT)
    assert info.value.code == 7
    rt = RuntimeConf(container_id="c", ifname="eth0", args=(("A", "x;B=y"),))
    with pytest.raises(InvalidArgument):
        await engine.add_network_list(netlist(), rt)
    # Plugins split each pair on '=' and refuse a third part (libcni's LoadArgs).
    rt = RuntimeConf(container_id="c", ifname="eth0", args=(("A", "x=y"),))
    with pytest.raises(InvalidArgument, match="'='"):
        await engine.add_network_list(netlist(), rt)
    assert a.calls() == []


async def test_check(engine: CNIEngine, a: FakePlugin, b: FakePlugin) -> None:
    net = netlist()
    await engine.add_network_list(net, RT)
    await engine.check_network_list(net, RT)
    assert [s["prevResult"]["ips"][0]["address"] for s in a.stdins("CHECK")] == ["10.99.0.2/24"]
    assert len(b.stdins("CHECK")) == 1
    a.on("CHECK", stdout={"code": 100, "msg": "drifted"}, exit=1)
    with pytest.raises(PluginError, match="drifted"):
        await engine.check_network_list(net, RT)
    assert len(b.stdins("CHECK")) == 1  # the chain stopped at the first failure


async def test_check_gates(engine: CNIEngine, a: FakePlugin) -> None:
    with pytest.raises(CheckNotSupported):
        await engine.check_network_list(netlist("0.3.1"), RT)
    with pytest.raises(CheckNotSupported):
        await engine.check_network_list(netlist("0.3.1", disableCheck=True), RT)
    await engine.check_network_list(netlist("1.0.0", disableCheck=True), RT)
    assert a.calls() == []


async def test_check_without_cache_runs_without_prev_result(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin
) -> None:
    await engine.check_network_list(netlist(), RT)
    assert "prevResult" not in a.stdins("CHECK")[0]


async def test_check_with_corrupt_cache(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    (cache_dir / "results").mkdir(parents=True)
    (cache_dir / "results" / "net1-ctr1-eth0").write_text("adfadsfasdfasfdsafaf")
    with pytest.raises(CacheError):
        await engine.check_network_list(netlist(), RT)
    assert a.calls() == []


async def test_del_reverse_order_with_cached_result(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    net = netlist()
    await engine.add_network_list(net, RT)
    await engine.del_network_list(net, RT)
    dels = list(a.calls("DEL") + b.calls("DEL"))
    assert [
        r["stdin"] and json.loads(r["stdin"])["type"] for r in sorted(dels, key=lambda r: r["time"])
    ] == [
        "plug-b",
        "plug-a",
    ]
    assert a.stdins("DEL")[0]["prevResult"]["ips"][0]["address"] == "10.99.0.2/24"
    assert os.listdir(cache_dir / "results") == []
    # A second DEL succeeds and runs the plugins again, without prevResult.
    await engine.del_network_list(net, RT)
    assert "prevResult" not in a.stdins("DEL")[1]


async def test_del_before_040_sends_no_prev_result(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin
) -> None:
    net = netlist("0.3.1")
    await engine.add_network_list(net, RT)
    await engine.del_network_list(net, RT)
    assert "prevResult" not in a.stdins("DEL")[0]


async def test_del_failure_keeps_cache_and_stops(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    net = netlist()
    await engine.add_network_list(net, RT)
    b.on("DEL", stdout={"code": 11, "msg": "busy"}, exit=1)
    with pytest.raises(PluginError) as info:
        await engine.del_network_list(net, RT)
    assert info.value.code == 11 and info.value.verb == "DEL"
    assert a.calls("DEL") == []
    assert os.listdir(cache_dir / "results") == ["net1-ctr1-eth0"]


@pytest.mark.parametrize("content", ["", "adfadsfasdfasfdsafaf", '{"cniVersion":"0.4567.0"}'])
async def test_del_drops_unusable_cache(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path, content: str
) -> None:
    (cache_dir / "results").mkdir(parents=True)
    (cache_dir / "results" / "net1-ctr1-eth0").write_text(content)
    await engine.del_network_list(netlist(), RT)
    assert "prevResult" not in a.stdins("DEL")[0]
    assert os.listdir(cache_dir / "results") == []


async def test_reads_go_written_cache_and_legacy_files(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    (cache_dir / "results").mkdir(parents=True)
    go_entry = (
        '{"kind":"cniCacheV1","containerId":"ctr1","config":"eyJ9","ifName":"eth0",'
        '"networkName":"net1","netns":"/var/run/netns/x","cniArgs":[["K","V"]],'
        '"capabilityArgs":{"portMappings":[{"hostPort":8080}]},"result":{"cniVersion":"1.1.0",'
        '"interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.2.3/24"}]}}'
    )
    (cache_dir / "results" / "net1-ctr1-eth0").write_text(go_entry)
    cached = await engine.get_cached_result(netlist("1.0.0"), RT)
    assert cached is not None and cached.cni_version == "1.0.0"
    [att] = await engine.get_cached_attachments("ctr1")
    assert (att.netns, att.cni_args, att.capability_args) == (
        "/var/run/netns/x",
        [("K", "V")],
        {"portMappings": [{"hostPort": 8080}]},
    )
    legacy = '{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}'
    (cache_dir / "results" / "net1-ctr1-eth0").write_text(legacy)
    await engine.check_network_list(netlist(), RT)
    prev = a.stdins("CHECK")[0]["prevResult"]
    assert prev == json.loads(legacy)


async def test_cache_written_by_us_decodes_as_go_would(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    await engine.add_network_list(netlist(), RT)
    raw = (cache_dir / "results" / "net1-ctr1-eth0").read_bytes()
    assert not raw.endswith(b"\n")
    entry = json.loads(raw)
    assert json.loads(base64.b64decode(entry["config"]))["name"] == "net1"


async def test_cache_directories_removed_meanwhile_are_made_again(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    await engine.add_network_list(netlist(), RT)
    for name in ("results", "cni_async-tmp"):
        for leftover in (cache_dir / name).iterdir():
            leftover.unlink()
        (cache_dir / name).rmdir()
    await engine.add_network_list(netlist(), RT)
    assert os.listdir(cache_dir / "results") == ["net1-ctr1-eth0"]
    assert os.listdir(cache_dir / "cni_async-tmp") == []
    (cache_dir / "results" / "net1-ctr1-eth0").unlink()
    (cache_dir / "results").rmdir()  # only results/: the rename finds it missing
    await engine.add_network_list(netlist(), RT)
    assert os.listdir(cache_dir / "results") == ["net1-ctr1-eth0"]


async def test_cache_attachment_listing(engine: CNIEngine, a: FakePlugin, b: FakePlugin) -> None:
    net = netlist()
    for cid in ("ctr1", "ctr10", "x-ctr1-y"):
        await engine.add_network_list(net, RuntimeConf(container_id=cid, ifname="eth0"))
    assert [e.container_id for e in await engine.get_cached_attachments("ctr1")] == ["ctr1"]
    assert len(await engine.get_cached_attachments()) == 3


async def test_version_info(engine: CNIEngine, a: FakePlugin) -> None:
    a.on("VERSION", versions=["0.4.0", "1.1.0"])
    info = await engine.get_version_info("plug-a")
    assert info.supported_versions == ("0.4.0", "1.1.0")
    [call] = a.calls("VERSION")
    assert json.loads(call["stdin"]) == {"cniVersion": "1.1.0"}
    assert {
        k: call["env"][k] for k in ("CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_CONTAINERID")
    } == {
        "CNI_NETNS": "dummy",
        "CNI_IFNAME": "dummy",
        "CNI_PATH": "dummy",
        "CNI_CONTAINERID": "",
    }


async def test_version_info_old_and_broken(engine: CNIEngine, a: FakePlugin) -> None:
    a.on("VERSION", stdout={"code": 4, "msg": "unknown CNI_COMMAND: VERSION"}, exit=1)
    assert (await engine.get_version_info("plug-a")).supported_versions == ("0.1.0",)
    a.on("VERSION", stdout={"cniVersion": "0.2.0"})
    assert (await engine.get_version_info("plug-a")).supported_versions == ("0.1.0", "0.2.0")
    a.on("VERSION", stdout={"cniVersion": "0.3.0"})
    with pytest.raises(ProtocolError, match="missing field supportedVersions"):
        await engine.get_version_info("plug-a")
    a.on("VERSION", stdout="{{{")
    with pytest.raises(ProtocolError, match="decoding version info"):
        await engine.get_version_info("plug-a")


async def test_validate(engine: CNIEngine, a: FakePlugin, b: FakePlugin) -> None:
    assert await engine.validate_network_list(netlist()) == frozenset({"portMappings"})
    a.on("VERSION", versions=["0.4.0"])
    with pytest.raises(VersionError, match=r"does not support config version '1\.1\.0'"):
        await engine.validate_network_list(netlist())
    b.on("VERSION", versions=["0.4.0"])
    with pytest.raises(MultipleErrors) as info:
        await engine.validate_network_list(netlist())
    assert {e.plugin for e in info.value.errors} == {"plug-a", "plug-b"}
    with pytest.raises(PluginNotFound):
        await engine.validate_network_list(netlist(plugins=[{"type": "nope"}]))


async def test_status(engine: CNIEngine, a: FakePlugin, b: FakePlugin) -> None:
    await engine.status_network_list(netlist("1.0.0"))
    assert a.calls() == []
    await engine.status_network_list(netlist())
    assert a.stdins("STATUS")[0] == {
        "cniVersion": "1.1.0",
        "name": "net1",
        "type": "plug-a",
        "capabilities": {"portMappings": True},
        "ipam": {"x": 1},
    }
    assert a.calls("STATUS")[0]["env"]["CNI_CONTAINERID"] == ""
    a.on("STATUS", stdout={"code": 50, "msg": "no IPs left"}, exit=1)
    with pytest.raises(PluginNotAvailable):
        await engine.status_network_list(netlist())
    assert len(b.calls("STATUS")) == 1


async def test_gc(engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path) -> None:
    net = netlist()
    for cid in ("keep", "stale1", "stale2"):
        await engine.add_network_list(net, RuntimeConf(container_id=cid, ifname="eth0"))
    await engine.gc_network_list(netlist(disableGC=True), [])
    assert a.calls("DEL") == [] and a.calls("GC") == []

    b.on("DEL", stdout={"code": 5, "msg": "io"}, exit=1)
    with pytest.raises(MultipleErrors) as info:
        await engine.gc_network_list(net, [("keep", "eth0")])
    assert len(info.value.errors) == 2  # both stale DELs failed; GC still ran
    [gc_a] = a.stdins("GC")
    assert gc_a["cni.dev/valid-attachments"] == [{"containerID": "keep", "ifname": "eth0"}]
    assert gc_a["cni.dev/attachments"] == gc_a["cni.dev/valid-attachments"]
    assert len(b.stdins("GC")) == 1

    b.on("DEL")
    await engine.gc_network_list(net, [("keep", "eth0")])
    assert sorted(os.listdir(cache_dir / "results")) == ["net1-keep-eth0"]
    assert {c["env"]["CNI_CONTAINERID"] for c in b.calls("DEL")} == {"stale1", "stale2"}


async def test_gc_before_110_only_dels(engine: CNIEngine, a: FakePlugin, b: FakePlugin) -> None:
    net = netlist("1.0.0")
    await engine.add_network_list(net, RuntimeConf(container_id="old", ifname="eth0"))
    await engine.gc_network_list(net, [])
    assert len(a.calls("DEL")) == 1
    assert a.calls("GC") == []


async def test_cancel_mid_chain(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    b.on("ADD", sleep=60)
    with anyio.move_on_after(1.5) as scope:
        await engine.add_network_list(netlist(), RT)
    assert scope.cancelled_caught
    assert len(a.calls("ADD")) == 1
    assert children() == []
    assert not (cache_dir / "results" / "net1-ctr1-eth0").exists()


async def test_concurrency_limit(bin_dir: Path, cache_dir: Path, a: FakePlugin) -> None:
    engine = CNIEngine([str(bin_dir)], cache_dir=str(cache_dir), max_concurrent_execs=1)
    a.on("ADD", sleep=0.3)
    net = netlist(plugins=[{"type": "plug-a"}])
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(
                engine.add_network_list, net, RuntimeConf(container_id=f"c{i}", ifname="eth0")
            )
    starts = sorted(c["time"] for c in a.calls("ADD"))
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(starts))


async def test_version_probes_take_no_process_slot(
    bin_dir: Path, cache_dir: Path, a: FakePlugin, b: FakePlugin
) -> None:
    """A reload's probes do not queue behind slow pod operations holding every slot."""
    engine = CNIEngine([str(bin_dir)], cache_dir=str(cache_dir), max_concurrent_execs=1)
    a.on("ADD", sleep=2)
    net = netlist(plugins=[{"type": "plug-a"}])
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.add_network_list, net, RT)
        while not a.calls("ADD"):
            await anyio.sleep(0.01)
        with anyio.fail_after(1.5):  # well before the ADD gives its slot back
            await engine.get_version_info("plug-b")
        assert len(b.calls("VERSION")) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_concurrency_limit_must_be_positive(bin_dir: Path, limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CNIEngine([str(bin_dir)], max_concurrent_execs=limit)


async def test_validation_errors_in_chain_order(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin
) -> None:
    a.on("VERSION", versions=["0.4.0"], sleep=0.5)  # a answers last, but is first in the chain
    b.on("VERSION", versions=["0.4.0"])
    with pytest.raises(MultipleErrors) as info:
        await engine.validate_network_list(netlist())
    assert [e.plugin for e in info.value.errors] == ["plug-a", "plug-b"]


async def test_gc_verb_runs_when_the_cache_cannot_be_listed(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "results").write_text("not a directory")  # listing it fails
    with pytest.raises(MultipleErrors) as info:
        await engine.gc_network_list(netlist(), [])
    assert any(isinstance(e, CacheError) for e in info.value.errors)
    assert len(a.calls("GC")) == 1 and len(b.calls("GC")) == 1


async def test_inherited_env_is_allow_listed(
    bin_dir: Path, cache_dir: Path, a: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("CNI_ARGS", "LEAK=1")
    monkeypatch.setenv("XTABLES_LOCKFILE", "/run/x.lock")
    engine = CNIEngine(
        [str(bin_dir)],
        cache_dir=str(cache_dir),
        inherit_env=("PATH", "XTABLES_LOCKFILE"),
        extra_env={"TRACEPARENT": "00-abc"},
    )
    await engine.add_network_list(netlist(plugins=[{"type": "plug-a"}]), RT)
    env = a.calls("ADD")[0]["env"]
    assert "SECRET_TOKEN" not in env
    assert env["CNI_ARGS"] == "K8S_POD_NAME=p;IgnoreUnknown=1"
    assert env["XTABLES_LOCKFILE"] == "/run/x.lock"
    assert env["TRACEPARENT"] == "00-abc"
    assert set(env) <= {
        "PATH",
        "XTABLES_LOCKFILE",
        "TRACEPARENT",
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
        "LC_CTYPE",
    }


async def test_del_keep_going_tries_every_plugin(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin, cache_dir: Path
) -> None:
    net = netlist()
    await engine.add_network_list(net, RT)
    b.on("DEL", stdout={"code": 11, "msg": "busy"}, exit=1)
    with pytest.raises(PluginError):
        await engine.del_network_list(net, RT, keep_going=True)
    assert len(a.calls("DEL")) == 1
    assert os.listdir(cache_dir / "results") == ["net1-ctr1-eth0"]
    a.on("DEL", stdout={"code": 5, "msg": "io"}, exit=1)
    with pytest.raises(MultipleErrors) as info:
        await engine.del_network_list(net, RT, keep_going=True)
    assert [e.plugin for e in info.value.errors] == ["plug-b", "plug-a"]


async def test_verb_timeout_stops_the_plugin(bin_dir: Path, cache_dir: Path, a: FakePlugin) -> None:
    engine = CNIEngine([str(bin_dir)], cache_dir=str(cache_dir), timeouts={"ADD": 0.5})
    a.on("ADD", sleep=60)
    with pytest.raises(PluginTimeout) as info:
        await engine.add_network_list(netlist(plugins=[{"type": "plug-a"}]), RT)
    assert (info.value.verb, info.value.plugin, info.value.network) == ("ADD", "plug-a", "net1")
    assert children() == []


async def test_del_of_a_list_without_plugins_is_refused(engine: CNIEngine, cache_dir: Path) -> None:
    empty = parse_conflist(b'{"cniVersion":"1.1.0","name":"net1"}')
    with pytest.raises(ConfigError):
        await engine.del_network_list(empty, RT)


async def test_gc_without_valid_list_sends_no_keys(
    engine: CNIEngine, a: FakePlugin, b: FakePlugin
) -> None:
    await engine.gc_network_list(netlist(), None)
    assert "cni.dev/valid-attachments" not in a.stdins("GC")[0]
    await engine.gc_network_list(netlist(), [])
    assert a.stdins("GC")[1]["cni.dev/valid-attachments"] == []


async def test_validate_refuses_bad_network_names(engine: CNIEngine, a: FakePlugin) -> None:
    bad = parse_conflist(b'{"cniVersion":"1.1.0","name":"my net","plugins":[{"type":"plug-a"}]}')
    with pytest.raises(InvalidArgument):
        await engine.validate_network_list(bad)


@pytest.mark.parametrize("count", [2, 20_000])
async def test_a_huge_result_is_parsed_off_the_event_loop(
    engine: CNIEngine, a: FakePlugin, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """A plugin printing tens of thousands of addresses must not stall every other pod while
    it is parsed: outputs that large are decoded in a worker thread, small ones inline."""
    ips = [{"address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"} for i in range(count)]
    a.on("ADD", stdout={"cniVersion": "1.1.0", "ips": ips})
    threads: list[bool] = []
    real = parse_result

    def parse(output: bytes, version: str) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(output, version)

    monkeypatch.setattr(engine_module, "parse_result", parse)
    result = await engine.add_network_list(netlist(plugins=[{"type": "plug-a"}]), RT)
    assert len(result.ips) == count  # type: ignore[union-attr]
    assert threads == [count == 2]
