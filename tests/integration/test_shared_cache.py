"""Two runtimes over one cache directory: GC and status never reach beyond what is theirs.

Each ``CNIPlugin`` here stands for a runtime of its own (its own configuration directory),
sharing the cache directory as runtimes on a node share ``/var/lib/cni``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cni_async import (
    CNIPlugin,
    InvalidArgument,
    NamespaceError,
    NetAttachment,
    NetworkNotFound,
    PodNetwork,
    PodNetworkError,
)

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]


@pytest.fixture
def fakes(dirs: dict[str, Path]) -> dict[str, FakePlugin]:
    return {name: FakePlugin(dirs["bin"], name) for name in ("fa", "fb")}


@pytest.fixture
def conf_dirs(tmp_path: Path) -> dict[str, Path]:
    """``a`` has neta; ``ab`` has neta and netb (both plugins at 1.1.0, so GC is sent)."""
    for name, nets in (("a", ("neta",)), ("ab", ("neta", "netb"))):
        for net in nets:
            write_conflist(tmp_path / name, net, [{"type": "f" + net[-1]}])
    return {"a": tmp_path / "a", "ab": tmp_path / "ab"}


@asynccontextmanager
async def runtime(conf: Path, dirs: dict[str, Path], **kw: Any) -> AsyncIterator[CNIPlugin]:
    async with CNIPlugin(
        str(conf), [str(dirs["bin"])], str(dirs["cache"]), watch=False, **kw
    ) as plugin:
        yield plugin


def pod(net: Sandbox, name: str, *networks: str) -> PodNetwork:
    return PodNetwork(
        name,
        "ns1",
        f"{net.prefix}-{name}",
        f"uid-{name}",
        net.netns(name),
        [NetAttachment(n) for n in networks],
    )


def cache_files(dirs: dict[str, Path]) -> list[str]:
    return sorted(os.listdir(dirs["cache"] / "results"))


def valid_attachments(fake: FakePlugin) -> list[list[dict[str, str]]]:
    return [stdin["cni.dev/valid-attachments"] for stdin in fake.stdins("GC")]


async def test_gc_collects_only_the_networks_it_has_a_configuration_for(
    net: Sandbox,
    dirs: dict[str, Path],
    conf_dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
) -> None:
    on_b, on_a = pod(net, "onb", "netb"), pod(net, "ona", "neta")
    async with runtime(conf_dirs["ab"], dirs) as other:
        await other.set_up_pod(on_b)
        await other.set_up_pod(on_a)
    async with runtime(conf_dirs["a"], dirs) as ours:
        await ours.gc([])
    # netb is not ours: its entry stays and its plugin hears nothing (no DEL, no GC).
    assert cache_files(dirs) == [f"netb-{on_b.id}-eth0"]
    assert fakes["fb"].calls("DEL") == []
    assert fakes["fb"].calls("GC") == []
    # neta is ours, with libcni's semantics: every attachment not in valid_pods is stale.
    [stale] = fakes["fa"].calls("DEL")
    assert stale["env"]["CNI_CONTAINERID"] == on_a.id
    assert valid_attachments(fakes["fa"]) == [[]]


async def test_gc_with_an_owner_leaves_other_runtimes_attachments_alone(
    net: Sandbox,
    dirs: dict[str, Path],
    conf_dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
) -> None:
    theirs, mine, my_stale = (pod(net, n, "neta") for n in ("theirs", "mine", "stale"))
    async with runtime(conf_dirs["a"], dirs) as other:  # no owner: writes none, like Go
        await other.set_up_pod(theirs)
    async with runtime(conf_dirs["a"], dirs, owner="rt-x") as ours:
        await ours.set_up_pod(mine)
        await ours.set_up_pod(my_stale)
        entry = json.loads((dirs["cache"] / "results" / f"neta-{mine.id}-eth0").read_bytes())
        assert entry["cniAsyncOwner"] == "rt-x"
        assert entry["kind"] == "cniCacheV1"
        await ours.gc([mine])
    assert cache_files(dirs) == sorted([f"neta-{mine.id}-eth0", f"neta-{theirs.id}-eth0"])
    [stale] = fakes["fa"].calls("DEL")
    assert stale["env"]["CNI_CONTAINERID"] == my_stale.id
    # No GC verb: the plugin would free every attachment not listed, and another runtime's
    # ADD in flight is in no cache yet.
    assert fakes["fa"].calls("GC") == []
    # Without an owner, GC is libcni's and collects the other runtime's attachment too.
    async with runtime(conf_dirs["a"], dirs) as plain:
        await plain.gc([mine])
    assert cache_files(dirs) == [f"neta-{mine.id}-eth0"]
    assert valid_attachments(fakes["fa"]) == [[{"containerID": mine.id, "ifname": "eth0"}]]


@pytest.mark.parametrize("owner", ["", 7])
def test_an_owner_must_be_a_non_empty_string(owner: Any, dirs: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument, match="owner"):
        CNIPlugin(str(dirs["conf"]), owner=owner)


async def test_status_and_teardown_from_the_cache_when_the_configuration_is_gone(
    net: Sandbox,
    dirs: dict[str, Path],
    conf_dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
) -> None:
    p = pod(net, "p1", "neta", "netb")
    async with runtime(conf_dirs["ab"], dirs) as cni:
        [_, on_b] = await cni.set_up_pod(p)
        (conf_dirs["ab"] / "netb.conflist").unlink()
        await cni.reload()
        assert cni.config.get("netb") is None
        statuses = await cni.get_pod_network_status(p)
        assert [(s.name, s.ifname) for s in statuses] == [("neta", "eth0"), ("netb", "eth1")]
        assert statuses[1].result == on_b.result
        [check] = fakes["fb"].calls("CHECK")
        assert check["env"]["CNI_IFNAME"] == "eth1"
        # A network with neither a configuration nor a cached attachment is still an error.
        with pytest.raises(NetworkNotFound, match="netc"):
            await cni.get_pod_network_status(
                PodNetwork(p.name, p.namespace, p.id, p.uid, p.netns, [NetAttachment("netc")])
            )
        await cni.tear_down_pod(p)
        assert [c["env"]["CNI_IFNAME"] for c in fakes["fb"].calls("DEL")] == ["eth1"]
    assert cache_files(dirs) == []


@pytest.mark.parametrize("host", ["/proc/self/ns/net", "/proc/1/ns/net"])
async def test_the_hosts_namespace_is_never_a_pods(
    net: Sandbox,
    dirs: dict[str, Path],
    conf_dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
    host: str,
) -> None:
    try:
        os.stat(host)
    except OSError as exc:  # a sandbox may hide PID 1; then no plugin could enter it either
        pytest.skip(f"{host} cannot be opened here: {exc}")
    p = pod(net, "p1", "neta")
    on_host = PodNetwork(p.name, p.namespace, p.id, p.uid, host, p.networks)
    async with runtime(conf_dirs["a"], dirs) as cni:
        with pytest.raises(NamespaceError, match="allow_host_netns"):
            await cni.set_up_pod(on_host)
        with pytest.raises(NamespaceError, match="allow_host_netns"):
            await cni.get_pod_network_status(on_host)
        assert [c for c in fakes["fa"].commands() if c != "VERSION"] == []
        # Teardown (and GC) still release what is cached, with an empty CNI_NETNS.
        await cni.set_up_pod(p)
        await cni.tear_down_pod(on_host)
        [teardown] = fakes["fa"].calls("DEL")
        assert teardown["env"]["CNI_NETNS"] == ""
    async with runtime(conf_dirs["a"], dirs, allow_host_netns=True) as cni:
        await cni.set_up_pod(on_host)  # lo is up on the host already: nothing changes there
        [*_, add] = fakes["fa"].calls("ADD")
        assert add["env"]["CNI_NETNS"] == host
        await cni.tear_down_pod(on_host)
        assert fakes["fa"].calls("DEL")[-1]["env"]["CNI_NETNS"] == host


async def test_teardown_sends_del_even_when_the_cache_cannot_be_used(
    net: Sandbox,
    dirs: dict[str, Path],
    conf_dirs: dict[str, Path],
    fakes: dict[str, FakePlugin],
) -> None:
    p = pod(net, "p1", "neta")
    async with runtime(conf_dirs["a"], dirs) as cni:
        await cni.set_up_pod(p)
        (dirs["cache"] / "results").chmod(0o777)  # not a cache to act on any more
        with pytest.raises(PodNetworkError) as info:
            await cni.tear_down_pod(p)
        assert [type(e).__name__ for e in info.value.errors] == ["CacheError"]
        [delete] = fakes["fa"].calls("DEL")  # the network the pod names still got its DEL
        assert delete["env"]["CNI_CONTAINERID"] == p.id
        (dirs["cache"] / "results").chmod(0o700)
