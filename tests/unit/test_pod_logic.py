"""The pod logic without root: CNIPlugin over fake plugins and a fake of its namespace seam.

Rollback, teardown from the cache, GC and status run here as any user; nothing is made in a
real network namespace (the pod paths are never opened).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from cni_async import (
    CNIPlugin,
    InterfaceState,
    NamespaceError,
    NetAttachment,
    PodNetwork,
    PodNetworkError,
)

from ..support.namespaces import FakeNamespaces, fake_cni
from ..support.plugins import FakePlugin, write_conflist

pytestmark = pytest.mark.anyio


@pytest.fixture
def namespaces() -> FakeNamespaces:
    return FakeNamespaces()


@pytest.fixture
def fakes(dirs: dict[str, Path]) -> dict[str, FakePlugin]:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}], filename="10-neta.conflist")
    write_conflist(
        dirs["conf"], "netb", [{"type": "fb"}], filename="20-netb.conflist", disableCheck=True
    )
    return {name: FakePlugin(dirs["bin"], name) for name in ("fa", "fb")}


@pytest.fixture
async def cni(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], namespaces: FakeNamespaces
) -> AsyncIterator[CNIPlugin]:
    async with fake_cni(dirs, namespaces) as plugin:
        yield plugin


def pod(namespaces: FakeNamespaces, name: str, *networks: str) -> PodNetwork:
    return PodNetwork(
        name,
        "ns1",
        f"id-{name}",
        f"uid-{name}",
        namespaces.add(name),
        [NetAttachment(n) for n in networks],
    )


def cached(dirs: dict[str, Path]) -> list[str]:
    results = dirs["cache"] / "results"
    return sorted(os.listdir(results)) if results.exists() else []


def verbs(fake: FakePlugin) -> list[str]:
    return [c for c in fake.commands() if c != "VERSION"]


async def test_set_up_and_teardown(
    cni: CNIPlugin, namespaces: FakeNamespaces, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(namespaces, "p1", "neta", "netb")
    results = await cni.set_up_pod(p)
    assert [(r.name, r.ifname) for r in results] == [("neta", "eth0"), ("netb", "eth1")]
    assert p.netns in namespaces.lo_up
    assert cached(dirs) == ["neta-id-p1-eth0", "netb-id-p1-eth1"]
    await cni.tear_down_pod(p)
    assert verbs(fakes["fa"]) == ["ADD", "DEL"] and verbs(fakes["fb"]) == ["ADD", "DEL"]
    assert cached(dirs) == []


async def test_a_failed_network_rolls_back_the_others(
    cni: CNIPlugin, namespaces: FakeNamespaces, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    # Late enough that neta's ADD has run: a failure cancels the siblings still running.
    fakes["fb"].on("ADD", stdout={"code": 11, "msg": "try later"}, exit=1, sleep=0.5)
    with pytest.raises(PodNetworkError):
        await cni.set_up_pod(pod(namespaces, "p1", "neta", "netb"))
    assert verbs(fakes["fa"]) == ["ADD", "DEL"] and verbs(fakes["fb"]) == ["ADD", "DEL"]
    assert cached(dirs) == []
    assert await cni.engine.cache.intents() == {}


async def test_a_cancelled_set_up_rolls_back(
    cni: CNIPlugin, namespaces: FakeNamespaces, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    fakes["fb"].on("ADD", sleep=30)
    with anyio.move_on_after(1) as scope:
        await cni.set_up_pod(pod(namespaces, "p1", "neta", "netb"))
    assert scope.cancelled_caught
    assert verbs(fakes["fa"]) == ["ADD", "DEL"] and verbs(fakes["fb"]) == ["ADD", "DEL"]
    assert cached(dirs) == []


async def test_teardown_from_the_cache_when_namespace_and_file_are_gone(
    cni: CNIPlugin, namespaces: FakeNamespaces, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(namespaces, "p1", "netb")
    await cni.set_up_pod(p)
    namespaces.present.discard(p.netns)
    (dirs["conf"] / "20-netb.conflist").unlink()
    await cni.reload()
    await cni.tear_down_pod(PodNetwork(p.name, p.namespace, p.id, p.uid, p.netns))
    [delete] = fakes["fb"].calls("DEL")
    assert delete["env"]["CNI_NETNS"] == ""  # gone: IPAM is still released
    assert cached(dirs) == []


async def test_gc_collects_the_stale_and_tells_the_plugins_what_is_in_use(
    cni: CNIPlugin, namespaces: FakeNamespaces, fakes: dict[str, FakePlugin]
) -> None:
    keep, drop = pod(namespaces, "keep", "neta"), pod(namespaces, "drop", "neta")
    await cni.set_up_pod(keep)
    await cni.set_up_pod(drop)
    await cni.gc([keep])
    [stale] = fakes["fa"].calls("DEL")
    assert stale["env"]["CNI_CONTAINERID"] == drop.id
    [gc] = fakes["fa"].stdins("GC")
    assert gc["cni.dev/valid-attachments"] == [{"containerID": keep.id, "ifname": "eth0"}]


async def test_status_reads_the_interface_when_nothing_is_cached(
    cni: CNIPlugin, namespaces: FakeNamespaces, dirs: dict[str, Path]
) -> None:
    p = pod(namespaces, "p1", "netb")  # disableCheck: the cached result, else the interface
    await cni.set_up_pod(p)
    os.unlink(dirs["cache"] / "results" / "netb-id-p1-eth0")
    namespaces.interfaces[(p.netns, "eth0")] = InterfaceState(True, "aa:bb:cc:dd:ee:ff", [])
    [status] = await cni.get_pod_network_status(p)
    assert status.result.interfaces[0].mac == "aa:bb:cc:dd:ee:ff"
    del namespaces.interfaces[(p.netns, "eth0")]
    with pytest.raises(PodNetworkError):
        await cni.get_pod_network_status(p)
    namespaces.lo_up.discard(p.netns)
    with pytest.raises(NamespaceError, match="loopback is not up"):
        await cni.get_pod_network_status(p)


async def test_the_hosts_namespace_is_refused(cni: CNIPlugin, namespaces: FakeNamespaces) -> None:
    host = PodNetwork("p", "ns1", "id-p", "u", namespaces.add("host"), [NetAttachment("neta")])
    with pytest.raises(NamespaceError, match="allow_host_netns"):
        await cni.set_up_pod(host)


def test_the_fake_is_a_namespaces(namespaces: FakeNamespaces) -> None:
    from cni_async import Namespaces

    checked: Namespaces = namespaces  # mypy checks the protocol here
    assert checked is namespaces
