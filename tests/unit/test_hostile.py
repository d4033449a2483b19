"""Hostile input: fuzzed cache files, configs and plugin output, and names that try to escape.

Never an unexpected exception type, and never a file outside the cache directory."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_async import (
    CacheEntry,
    CacheError,
    CNIEngine,
    CNIError,
    InvalidArgument,
    RuntimeConf,
    load_config_dir,
    parse_conflist,
)
from cni_async._testing import ResultCache, decode_entry, find_plugin, host_namespace

NET = parse_conflist(b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"p"}]}')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
cache_like = st.fixed_dictionaries(
    {"kind": st.sampled_from(["cniCacheV1", "other", ""])},
    optional={
        "containerId": json_values,
        "config": json_values,
        "ifName": json_values,
        "networkName": json_values,
        "result": json_values,
        "cniArgs": json_values,
        "capabilityArgs": json_values,
        "cniVersion": json_values,
        "ips": json_values,
    },
)


class CannedExecutor:
    """An in-process executor: records calls, prints a fixed result."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def find_plugin(self, plugin_type: str, bin_dirs: Sequence[str]) -> str:
        return f"/fake/{plugin_type}"

    async def exec_plugin(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> bytes:
        await anyio.lowlevel.checkpoint()
        self.calls.append((env["CNI_COMMAND"], stdin))
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}'


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=300) | cache_like.map(lambda d: json.dumps(d).encode()))
def test_fuzzed_cache_files(tmp_path: Path, content: bytes) -> None:
    decode_entry(content)  # never raises
    cache_dir = tmp_path / "cache"
    (cache_dir / "results").mkdir(parents=True, exist_ok=True)
    (cache_dir / "results" / "net1-c1-eth0").write_bytes(content)
    (cache_dir / "cni_async-intents").mkdir(exist_ok=True)
    (cache_dir / "cni_async-intents" / "c1").write_bytes(content)
    executor = CannedExecutor()
    engine = CNIEngine(["/fake"], cache_dir=str(cache_dir), executor=executor)
    rt = RuntimeConf(container_id="c1", ifname="eth0")

    async def exercise() -> None:
        with contextlib.suppress(CacheError):
            await engine.get_cached_result(NET, rt)
        await engine.get_cached_attachments()
        await engine.cache.intents()
        await engine.del_network_list(NET, rt)  # a bad entry never blocks DEL

    anyio.run(exercise)
    assert os.listdir(cache_dir / "results") == []
    assert executor.calls[-1][0] == "DEL"


@settings(max_examples=150, deadline=None)
@given(stdout=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_plugin_output(stdout: bytes) -> None:
    class Garbage(CannedExecutor):
        async def exec_plugin(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> bytes:
            await anyio.lowlevel.checkpoint()
            return stdout

    engine = CNIEngine(["/fake"], cache_dir="/nonexistent-cache", executor=Garbage())

    async def exercise() -> None:
        with contextlib.suppress(CNIError):
            await engine.get_version_info("p")
        with contextlib.suppress(CNIError):
            await engine.add_network_list(NET, RuntimeConf(container_id="c1"))

    anyio.run(exercise)


ESCAPES = ["../../etc/x", "a/../../b", "..", ".", "", "x\n", "x\x00y", "-" * 300, "a b", "é"]


@pytest.mark.parametrize("bad", ESCAPES)
def test_names_cannot_escape_the_cache_dir(tmp_path: Path, bad: str) -> None:
    cache_dir = tmp_path / "deep" / "cache"
    executor = CannedExecutor()
    engine = CNIEngine(["/fake"], cache_dir=str(cache_dir), executor=executor)
    before = sorted(p for p in tmp_path.rglob("*"))

    async def exercise() -> None:
        runtimes = [RuntimeConf(container_id=bad, ifname="eth0")]
        if bad != "é":  # a valid Linux interface name (any bytes but '/', ':', spaces)
            runtimes.append(RuntimeConf(container_id="c1", ifname=bad))
        for rt in runtimes:
            for verb in (
                engine.add_network_list,
                engine.check_network_list,
                engine.del_network_list,
            ):
                with pytest.raises(InvalidArgument):
                    await verb(NET, rt)
            entry = CacheEntry(
                container_id=rt.container_id, if_name=rt.ifname, network_name="net1", config=b"{}"
            )
            with pytest.raises(InvalidArgument):
                await engine.cache.write_intent(rt.container_id, [entry])
        evil = (
            parse_conflist(
                json.dumps(
                    {"cniVersion": "1.1.0", "name": bad, "plugins": [{"type": "p"}]}
                ).encode()
            )
            if bad
            else None
        )
        if evil is not None:
            with pytest.raises(InvalidArgument):
                await engine.add_network_list(evil, RuntimeConf(container_id="c1"))

    anyio.run(exercise)
    assert executor.calls == []
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_plugin_type_cannot_name_a_path(tmp_path: Path) -> None:
    for bad in ("../../bin/sh", "/bin/sh", "x/y", ".."):
        with pytest.raises(CNIError):
            find_plugin(bad, [str(tmp_path)])


def test_symlinks_in_the_config_dir(tmp_path: Path) -> None:
    conf, outside = tmp_path / "conf", tmp_path / "outside"
    conf.mkdir()
    outside.mkdir()
    good = outside / "real.conflist"
    good.write_text('{"cniVersion":"1.1.0","name":"linked","plugins":[{"type":"p"}]}')
    (conf / "10-linked.conflist").symlink_to(good)
    (conf / "20-dangling.conflist").symlink_to(outside / "missing")
    (conf / "30-loop.conflist").symlink_to(conf / "30-loop.conflist")
    (conf / "40-dir.conflist").symlink_to(outside)

    directory = anyio.run(load_config_dir, str(conf))
    assert [n.name for n in directory.networks] == ["linked"]
    assert sorted(os.path.basename(p) for p, _ in directory.invalid) == [
        "20-dangling.conflist",
        "30-loop.conflist",
        "40-dir.conflist",
    ]


def test_cache_listing_ignores_foreign_files(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    results = tmp_path / "results"
    results.mkdir()
    (results / "junk").write_text("{}")
    (results / "net1-c1-eth0").symlink_to("/etc/passwd")
    (results / "subdir").mkdir()
    entry = {"kind": "cniCacheV1", "containerId": "../x", "ifName": "eth0", "networkName": "n"}
    (results / "n-..-x-eth0").write_text(json.dumps(entry))
    assert anyio.run(cache.attachments) == []


def test_the_host_namespaces_are_read_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each check stats the pod's path alone: the runtime's own namespace and PID 1's are
    known from the first check on."""
    target = tmp_path / "netns"
    target.touch()
    assert host_namespace(str(target)) is None
    statted: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kw: object) -> os.stat_result:
        statted.append(os.fspath(path))
        return real_stat(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    assert host_namespace(str(target)) is None
    assert host_namespace("/proc/self/ns/net") == "this process's own"
    assert host_namespace(str(tmp_path / "gone")) is None
    assert statted == [str(target), "/proc/self/ns/net", str(tmp_path / "gone")]
