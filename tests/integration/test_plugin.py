"""CNIPlugin with fake plugins, in namespaces the tests make (for ``lo``)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from cni_async import (
    BandwidthConfig,
    CacheEntry,
    CacheError,
    CNIPlugin,
    ContainerUnknown,
    InvalidArgument,
    IpRange,
    MultipleErrors,
    NamespaceError,
    NetAttachment,
    NetworkNotFound,
    PluginNotAvailable,
    PodNetwork,
    PodNetworkError,
    PortMapping,
    Result040,
    Result100,
    RuntimeConfig,
)
from cni_async._testing import assign_ifnames

from ..support.netns import Sandbox, link_state
from ..support.plugins import FakePlugin, write_conflist
from ..support.procs import children

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]


@pytest.fixture
def fakes(dirs: dict[str, Path]) -> dict[str, FakePlugin]:
    return {name: FakePlugin(dirs["bin"], name) for name in ("fa", "fb", "fc")}


@pytest.fixture
async def cni(dirs: dict[str, Path], fakes: dict[str, FakePlugin]) -> AsyncIterator[CNIPlugin]:
    write_conflist(
        dirs["conf"],
        "neta",
        [{"type": "fa", "capabilities": {"portMappings": True}}],
        filename="10-neta.conflist",
    )
    write_conflist(
        dirs["conf"],
        "netb",
        [{"type": "fb", "capabilities": {"aliases": True}}],
        filename="20-netb.conflist",
        version="0.4.0",
    )
    async with CNIPlugin(
        str(dirs["conf"]),
        [str(dirs["bin"])],
        str(dirs["cache"]),
        watch=False,
        cleanup_timeout=10,
    ) as plugin:
        yield plugin


def pod(net: Sandbox, *networks: str | tuple[str, str], name: str = "p1", **kw: Any) -> PodNetwork:
    attachments = [NetAttachment(n) if isinstance(n, str) else NetAttachment(*n) for n in networks]
    return PodNetwork(
        name, "ns1", f"{net.prefix}-{name}", f"uid-{name}", net.netns(name), attachments, **kw
    )


def cache_files(dirs: dict[str, Path]) -> list[str]:
    results = dirs["cache"] / "results"
    return sorted(os.listdir(results)) if results.exists() else []


async def unfinished_set_up(cni: CNIPlugin, p: PodNetwork) -> None:
    """What a set-up of ``p`` on neta (eth0) and netb (eth1) leaves if its process dies."""
    await cni.engine.cache.write_intent(
        p.id,
        [
            CacheEntry(container_id=p.id, network_name=n, if_name=i, netns=p.netns)
            for n, i in (("neta", "eth0"), ("netb", "eth1"))
        ],
    )


def test_interface_names() -> None:
    assert assign_ifnames(
        [
            NetAttachment("a"),
            NetAttachment("b", "eth0"),
            NetAttachment("c"),
            NetAttachment("d", "net1"),
        ]
    ) == [("a", "eth1"), ("b", "eth0"), ("c", "eth2"), ("d", "net1")]
    with pytest.raises(InvalidArgument, match="eth1 requested more than once"):
        assign_ifnames([NetAttachment("a", "eth1"), NetAttachment("b", "eth1")])
    with pytest.raises(InvalidArgument):
        assign_ifnames([NetAttachment("a", "x/y")])
    with pytest.raises(InvalidArgument, match="not valid text"):
        assign_ifnames([NetAttachment("a", "eth\udc80")])  # a lone surrogate


async def test_set_up_default_network(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    assert cni.name == "cni"
    assert cni.default_network_name == "neta"
    p = pod(net)
    assert "UP" not in link_state(p.netns, "lo")
    [result] = await cni.set_up_pod(p)
    assert (result.name, result.ifname) == ("neta", "eth0")
    assert isinstance(result.result, Result100)
    assert result.result.ips[0].address == "10.99.0.2/24"
    assert "UP" in link_state(p.netns, "lo")
    [call] = fakes["fa"].calls("ADD")
    assert call["env"]["CNI_ARGS"] == (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;"
        f"K8S_POD_INFRA_CONTAINER_ID={p.id};K8S_POD_UID=uid-p1"
    )
    assert cache_files(dirs) == [f"neta-{p.id}-eth0"]


async def test_the_intent_record_is_removed_and_let_go_off_the_loop(
    cni: CNIPlugin, net: Sandbox, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Removing the record waits for the file system whenever another thread's fsync is
    # committing the directory: it happens in the cache write's worker thread, which is there
    # anyway. Closing the last descriptor of the removed file (its lock) frees the file, which
    # waits for the disk: the freeing thread does it, and nobody waits for that.
    intents = str(dirs["cache"] / "cni_async-intents")
    calls: list[tuple[str, str]] = []
    p = pod(net)
    unlink, close = os.unlink, os.close

    def recording_unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        unlink(path, *args, **kwargs)
        if os.fspath(path).startswith(intents):
            calls.append(("unlink", threading.current_thread().name))

    def recording_close(fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        # The record's lock, under its temporary name or its own (not the directory, fsync'd)
        if str(dirs["cache"]) in target and os.path.basename(target).startswith(p.id):
            calls.append(("close", threading.current_thread().name))
        close(fd)

    monkeypatch.setattr(os, "unlink", recording_unlink)
    monkeypatch.setattr(os, "close", recording_close)
    for _ in range(2):
        await cni.set_up_pod(p)
        with anyio.fail_after(5):
            while len(calls) % 2:  # the lock's close, on the freeing thread
                await anyio.sleep(0.01)
        await cni.get_pod_network_status(p)
        await cni.tear_down_pod(p)
    assert cache_files(dirs) == []
    assert os.listdir(intents) == []
    assert [kind for kind, _ in calls] == ["unlink", "close"] * 2
    loop_thread = threading.current_thread().name
    assert loop_thread not in {thread for _, thread in calls}
    assert {thread for kind, thread in calls if kind == "close"} == {"cni_async-freeing"}


async def test_results_in_request_order_and_versions(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    results = await cni.set_up_pod(pod(net, "netb", "neta"))
    assert [(r.name, r.ifname) for r in results] == [("netb", "eth0"), ("neta", "eth1")]
    assert isinstance(results[0].config_result, Result040)
    assert isinstance(results[0].result, Result100)
    assert results[0].result.ips[0].address == "10.99.0.2/24"


async def test_networks_attach_concurrently(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    fakes["fa"].on("ADD", sleep=0.6)
    fakes["fb"].on("ADD", sleep=0.6)
    await cni.set_up_pod(pod(net, "neta", "netb"))
    [a], [b] = fakes["fa"].calls("ADD"), fakes["fb"].calls("ADD")
    assert abs(a["time"] - b["time"]) < 0.5  # one after the other: 0.6 s or more


async def test_same_pod_serialised_other_pods_parallel(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    fakes["fa"].on("ADD", sleep=0.6)
    p1, p2 = pod(net, name="p1"), pod(net, name="p2")
    async with anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, p1)
        tg.start_soon(cni.set_up_pod, p1)
        tg.start_soon(cni.set_up_pod, p2)
    starts: dict[str, list[float]] = {}
    for c in fakes["fa"].calls("ADD"):
        starts.setdefault(c["env"]["CNI_CONTAINERID"], []).append(c["time"])
    first, second = sorted(starts[p1.id])
    assert second - first >= 0.55  # the second waited for the first
    assert abs(starts[p2.id][0] - first) < 0.4 or abs(starts[p2.id][0] - second) < 0.4


async def test_failure_rolls_back_every_started_network(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    fakes["fb"].on("ADD", stdout={"code": 3, "msg": "no such container"}, exit=1, sleep=0.3)
    p = pod(net, "neta", "netb")
    with pytest.raises(PodNetworkError) as info:
        await cni.set_up_pod(p)
    err = info.value
    assert err.pod == "ns1/p1"
    assert err.failed_networks == ("netb",)
    assert err.code == 3
    assert isinstance(err.errors[0], ContainerUnknown)
    assert "rolled back" in str(err)
    assert len(fakes["fa"].calls("DEL")) == 1
    assert len(fakes["fb"].calls("DEL")) == 1
    assert cache_files(dirs) == []


@pytest.mark.parametrize("how", ["move_on_after", "fail_after", "task_group"])
async def test_cancellation_rolls_back(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path], how: str
) -> None:
    fakes["fb"].on("ADD", sleep=60)
    p = pod(net, "neta", "netb")
    if how == "move_on_after":
        with anyio.move_on_after(1.0) as scope:
            await cni.set_up_pod(p)
        assert scope.cancelled_caught
    elif how == "fail_after":
        with pytest.raises(TimeoutError), anyio.fail_after(1.0):
            await cni.set_up_pod(p)
    else:

        async def boom() -> None:
            await anyio.sleep(1.0)
            raise RuntimeError("sibling")

        with pytest.raises(ExceptionGroup):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cni.set_up_pod, p)
                tg.start_soon(boom)
    assert len(fakes["fa"].calls("ADD")) == 1
    assert len(fakes["fa"].calls("DEL")) == 1
    assert len(fakes["fb"].calls("DEL")) == 1
    assert cache_files(dirs) == []
    assert children() == []


async def test_cancelled_while_dropping_the_intent_rolls_back(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    """Every network is attached and cached; a deadline expires as the intent is dropped."""
    cache = cni.engine.cache
    drop = cache.remove_intent
    scope = anyio.CancelScope()

    async def remove_intent(container_id: str) -> None:
        scope.cancel()
        await drop(container_id)

    cache.remove_intent = remove_intent  # type: ignore[method-assign]
    with scope:
        await cni.set_up_pod(pod(net, "neta", "netb"))
    assert scope.cancelled_caught
    assert len(fakes["fa"].calls("DEL")) == 1
    assert len(fakes["fb"].calls("DEL")) == 1
    assert cache_files(dirs) == []
    assert await cache.intents() == {}


async def test_failed_intent_rewrite_rolls_back(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    """An earlier, unfinished set-up left netb in the intent; this set-up attaches neta and
    cannot rewrite the intent afterwards: neta is rolled back, netb stays recorded."""
    p = pod(net, "neta")
    cache = cni.engine.cache
    left = CacheEntry(container_id=p.id, network_name="netb", if_name="eth1", netns=p.netns)
    await cache.write_intent(p.id, [left])
    write = cache.write_intent
    calls = 0

    async def write_intent(container_id: str, attachments: list[CacheEntry], **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the set-up's own record is written (locked) by write_intent_held
            raise CacheError("disk full", path="intent")
        await write(container_id, attachments, **kw)

    cache.write_intent = write_intent  # type: ignore[method-assign]
    with pytest.raises(CacheError):
        await cni.set_up_pod(p)
    assert len(fakes["fa"].calls("ADD")) == 1
    assert len(fakes["fa"].calls("DEL")) == 1
    assert cache_files(dirs) == []
    intents = await cache.intents()
    assert [(e.network_name, e.if_name) for e in intents[p.id]] == [("netb", "eth1")]


async def test_rollback_past_cleanup_timeout_names_each_network(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}], filename="10-neta.conflist")
    write_conflist(dirs["conf"], "netb", [{"type": "fb"}], filename="20-netb.conflist")
    write_conflist(dirs["conf"], "netc", [{"type": "fc"}], filename="30-netc.conflist")
    fakes["fa"].on("ADD", stdout={"code": 11, "msg": "busy"}, exit=1, sleep=0.3)
    fakes["fb"].on("DEL", sleep=30)
    fakes["fc"].on("DEL", stdout={"code": 7, "msg": "cannot"}, exit=1)
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False, cleanup_timeout=1
    ) as cni:
        with pytest.raises(PodNetworkError) as info:
            await cni.set_up_pod(pod(net, "neta", "netb", "netc"))
    failed = {e.network: e for e in info.value.rollback_errors}
    assert set(failed) == {"netb", "netc"}  # netb's DEL timed out, netc's failed; neta's worked
    assert "did not finish within 1 s" in failed["netb"].message
    assert failed["netc"].code == 7
    assert "ROLLBACK FAILED for 'netb', 'netc'" in str(info.value)


async def test_waiting_for_a_process_slot_is_not_the_plugins_time(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}])
    fakes["fa"].on("ADD", sleep=1.2)
    async with CNIPlugin(
        str(dirs["conf"]),
        [str(dirs["bin"])],
        str(dirs["cache"]),
        watch=False,
        max_concurrent_execs=1,
        timeouts={"ADD": 2.0},
    ) as cni:
        pods = [pod(net, "neta", name=f"p{i}") for i in range(2)]
        async with anyio.create_task_group() as tg:  # the second waits ~1.2 s for the slot
            for p in pods:
                tg.start_soon(cni.set_up_pod, p)
        for p in pods:
            await cni.tear_down_pod(p)
    first, second = sorted(c["time"] for c in fakes["fa"].calls("ADD"))
    assert second - first >= 1.1


async def test_duplicate_ifnames_rejected_before_any_plugin(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    with pytest.raises(InvalidArgument):
        await cni.set_up_pod(pod(net, ("neta", "eth0"), ("netb", "eth0")))
    assert fakes["fa"].calls("ADD") == [] and fakes["fb"].calls("ADD") == []


async def test_bad_static_ip_and_mac(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    for rc in (
        RuntimeConfig(ip="10.0.0.300"),
        RuntimeConfig(ip="fe80::1%eth0"),  # a zone: Go's net.ParseIP refuses it
        RuntimeConfig(mac="zz:00:00:00:00:00"),
    ):
        with pytest.raises(InvalidArgument):
            await cni.set_up_pod(pod(net, "neta", runtime_config={"neta": rc}, name=f"p{id(rc)}"))
    assert fakes["fa"].calls("ADD") == []
    p = pod(
        net, "neta", runtime_config={"neta": RuntimeConfig(ip="10.1.2.3", mac="02:00:00:00:00:01")}
    )
    await cni.set_up_pod(p)
    assert (
        fakes["fa"]
        .calls("ADD")[0]["env"]["CNI_ARGS"]
        .endswith(";IP=10.1.2.3;MAC=02:00:00:00:00:01")
    )


async def test_capability_args(cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]) -> None:
    rc = RuntimeConfig(
        port_mappings=[PortMapping(8080, 80, host_ip="127.0.0.1")],
        bandwidth=BandwidthConfig(ingress_rate=1000, ingress_burst=10),
        ip_ranges=[[IpRange("10.5.0.0/16", range_start="10.5.0.10")]],
        pod_annotations={"secret": "x"},
    )
    p = pod(
        net,
        "neta",
        "netb",
        runtime_config={"neta": rc, "netb": rc},
        aliases={"netb": ["web"], "neta": ["other"]},
    )
    await cni.set_up_pod(p)
    assert fakes["fa"].stdins("ADD")[0]["runtimeConfig"] == {
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}
        ]
    }
    assert fakes["fb"].stdins("ADD")[0]["runtimeConfig"] == {"aliases": {"netb": ["web"]}}
    cached = json.loads((Path(cni.engine.cache.results_dir) / f"neta-{p.id}-eth0").read_text())
    assert cached["capabilityArgs"]["bandwidth"] == {"ingressRate": 1000, "ingressBurst": 10}
    assert cached["capabilityArgs"]["ipRanges"] == [
        [{"subnet": "10.5.0.0/16", "rangeStart": "10.5.0.10"}]
    ]


async def test_teardown_from_cache_without_config(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(net, "neta", "netb")
    await cni.set_up_pod(p)
    for f in dirs["conf"].iterdir():
        f.unlink()
    await cni.reload()
    await cni.tear_down_pod(PodNetwork(p.name, p.namespace, p.id, p.uid, p.netns))
    [del_a] = fakes["fa"].calls("DEL")
    [del_b] = fakes["fb"].calls("DEL")
    assert del_a["env"]["CNI_IFNAME"] == "eth0" and del_b["env"]["CNI_IFNAME"] == "eth1"
    assert json.loads(del_b["stdin"])["prevResult"]["ips"][0]["address"] == "10.99.0.2/24"
    assert cache_files(dirs) == []


async def test_teardown_is_best_effort(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(net, "neta", "netb")
    await cni.set_up_pod(p)
    fakes["fa"].on("DEL", stdout={"code": 11, "msg": "busy"}, exit=1)
    with pytest.raises(PodNetworkError) as info:
        await cni.tear_down_pod(p)
    assert info.value.failed_networks == ("neta",)
    assert len(fakes["fb"].calls("DEL")) == 1
    assert cache_files(dirs) == [f"neta-{p.id}-eth0"]
    fakes["fa"].on("DEL")
    await cni.tear_down_pod(p)
    assert cache_files(dirs) == []


async def test_teardown_with_namespace_gone(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    p = pod(net, "neta")
    await cni.set_up_pod(p)
    os.system(f"ip netns del {os.path.basename(p.netns)}")
    await cni.tear_down_pod(p)
    assert fakes["fa"].calls("DEL")[0]["env"]["CNI_NETNS"] == ""


async def test_status_of_pod(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(net, "neta", "netb")
    with pytest.raises(NamespaceError, match="loopback is not up"):
        await cni.get_pod_network_status(p)
    await cni.set_up_pod(p)
    results = await cni.get_pod_network_status(p)
    assert [r.result.ips[0].address for r in results] == ["10.99.0.2/24", "10.99.0.2/24"]
    assert len(fakes["fa"].calls("CHECK")) == 1 and len(fakes["fb"].calls("CHECK")) == 1
    # Without a cached result, the addresses come from the namespace.
    for f in (dirs["cache"] / "results").iterdir():
        f.unlink()
    ns = os.path.basename(p.netns)
    os.system(f"ip -n {ns} link add eth0 type veth peer name peer0")
    os.system(f"ip -n {ns} addr add 10.77.0.5/24 dev eth0")
    os.system(f"ip -n {ns} link add eth1 type veth peer name peer1")
    results = await cni.get_pod_network_status(p)
    assert [list(r.result.ips) and r.result.ips[0].address for r in results] == ["10.77.0.5/24", []]
    assert results[0].result.interfaces[0].mac != ""


async def test_missing_network_and_reload_on_miss(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    with pytest.raises(NetworkNotFound, match="'netc'"):
        await cni.set_up_pod(pod(net, "netc", name="p0"))
    write_conflist(dirs["conf"], "netc", [{"type": "fc"}], filename="30-netc.conflist")
    [result] = await cni.set_up_pod(pod(net, "netc"))
    assert result.name == "netc"


async def test_plugin_binary_missing_makes_network_invalid(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    write_conflist(dirs["conf"], "ghost", [{"type": "nope"}], filename="05-ghost.conflist")
    write_conflist(dirs["conf"], "real", [{"type": "fa"}], filename="10-real.conflist")
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        assert cni.default_network_name == "real"
        [(path, error)] = cni.config.invalid
        assert path.endswith("05-ghost.conflist") and "nope" in str(error)
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), default_network="ghost"
    ) as cni:
        assert cni.default_network_name is None
        with pytest.raises(NetworkNotFound, match="'ghost'"):
            await cni.status()
        with pytest.raises(NetworkNotFound):
            await cni.set_up_pod(pod(net))


async def test_status_readiness(dirs: dict[str, Path], fakes: dict[str, FakePlugin]) -> None:
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        with pytest.raises(NetworkNotFound, match="has your network provider started"):
            await cni.status()
        write_conflist(dirs["conf"], "neta", [{"type": "fa"}])
        await cni.status()  # reloads on the miss
        fakes["fa"].on("STATUS", stdout={"code": 50, "msg": "out of addresses"}, exit=1)
        with pytest.raises(PluginNotAvailable):
            await cni.status()


async def test_gc(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    keep, drop = pod(net, "neta", "netb", name="keep"), pod(net, "neta", name="drop")
    await cni.set_up_pod(keep)
    await cni.set_up_pod(drop)
    await cni.gc([keep])
    assert cache_files(dirs) == [f"neta-{keep.id}-eth0", f"netb-{keep.id}-eth1"]
    [stale_del] = fakes["fa"].calls("DEL")
    assert stale_del["env"]["CNI_CONTAINERID"] == drop.id
    [gc] = fakes["fa"].stdins("GC")
    assert gc["cni.dev/valid-attachments"] == [{"containerID": keep.id, "ifname": "eth0"}]
    assert fakes["fb"].calls("GC") == []  # 0.4.0: no GC verb
    fakes["fa"].on("GC", stdout={"code": 5, "msg": "io"}, exit=1)
    with pytest.raises(MultipleErrors):
        await cni.gc([keep])


async def test_gc_counts_a_pod_set_up_meanwhile_as_in_use(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    """The runtime's valid list was made before a new pod; GC must not tell the plugins to
    free what that pod got while GC was busy with the stale ones."""
    old, new = pod(net, "neta", name="old"), pod(net, "neta", name="new")
    await cni.set_up_pod(old)
    fakes["fa"].on(f"DEL:{old.id}", sleep=1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cni.gc, [])
        while not fakes["fa"].calls("DEL"):
            await anyio.sleep(0.01)
        await cni.set_up_pod(new)
    [gc] = fakes["fa"].stdins("GC")
    assert gc["cni.dev/valid-attachments"] == [{"containerID": new.id, "ifname": "eth0"}]


async def test_gc_verb_waits_for_a_set_up_in_flight(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    new = pod(net, "neta", name="new")
    fakes["fa"].on("ADD", sleep=1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, new)
        while not fakes["fa"].calls("ADD"):
            await anyio.sleep(0.01)
        await cni.gc([])
    [add] = fakes["fa"].calls("ADD")
    [gc] = fakes["fa"].calls("GC")
    assert gc["time"] - add["time"] >= 0.9  # sent once the ADD had finished
    assert json.loads(gc["stdin"])["cni.dev/valid-attachments"] == [
        {"containerID": new.id, "ifname": "eth0"}
    ]


async def test_gc_with_an_invalid_valid_pod_still_sends_the_verb(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    bad = pod(net, ("neta", "eth0"), ("netb", "eth0"), name="bad")  # one ifname twice
    with pytest.raises(MultipleErrors) as info:
        await cni.gc([bad])
    assert any(isinstance(e, InvalidArgument) for e in info.value.errors)
    assert len(fakes["fa"].calls("GC")) == 1


async def test_partial_teardown_keeps_the_rest_of_an_intent(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    """A set-up that died left neta and netb in its intent; tearing down neta alone must leave
    netb for a later teardown (or GC) to find."""
    p = pod(net, "neta", "netb")
    cache = cni.engine.cache
    await unfinished_set_up(cni, p)
    await cni.tear_down_pod(msgspec.structs.replace(p, networks=[NetAttachment("neta")]))
    assert [(e.network_name, e.if_name) for e in await cache.read_intent(p.id)] == [
        ("netb", "eth1")
    ]
    await cni.tear_down_pod(msgspec.structs.replace(p, networks=[]))
    assert len(fakes["fb"].calls("DEL")) == 1
    assert await cache.intents() == {}


async def test_gc_keeps_intent_records_of_networks_it_leaves_alone(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}], filename="10-neta.conflist")
    write_conflist(
        dirs["conf"], "netb", [{"type": "fb"}], filename="20-netb.conflist", disableGC=True
    )
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        p = pod(net, "neta", "netb")
        cache = cni.engine.cache
        await unfinished_set_up(cni, p)
        await cni.gc([])
        assert len(fakes["fa"].calls("DEL")) == 1 and fakes["fb"].calls("DEL") == []
        [(cid, left)] = (await cache.intents()).items()
        assert cid == p.id and [(e.network_name, e.if_name) for e in left] == [("netb", "eth1")]


async def test_closed(dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox) -> None:
    cni = CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]))
    with pytest.raises(anyio.ClosedResourceError):
        await cni.status()
    async with cni:
        pass
    await cni.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await cni.set_up_pod(pod(net))


@pytest.mark.parametrize("watch", [True, False])
async def test_exceptions_leave_the_block_unwrapped(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], watch: bool
) -> None:
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}])
    with pytest.raises(TimeoutError):
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=watch
        ):
            with anyio.fail_after(0.01):
                await anyio.sleep(1)
    with pytest.raises(KeyError) as info:
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=watch
        ):
            try:
                raise ValueError("inner")
            except ValueError as exc:
                raise KeyError("outer") from exc
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(KeyError) as info:
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=watch
        ):
            try:
                raise ValueError("inner")
            except ValueError:
                raise KeyError("outer")  # noqa: B904 - the implicit context is the point
    assert isinstance(info.value.__context__, ValueError)
    assert not info.value.__suppress_context__
    # a group the body raises itself comes out as that group
    with pytest.raises(ExceptionGroup) as group:
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=watch
        ):
            raise ExceptionGroup("mine", [ValueError("a"), ValueError("b")])
    assert group.value.message == "mine"


async def test_lock_wait_is_cancellable(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    fakes["fa"].on("ADD", sleep=1.5)
    p = pod(net)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cni.set_up_pod, p)
        await anyio.sleep(0.3)
        with anyio.move_on_after(0.3) as scope:
            await cni.tear_down_pod(p)  # waits for the pod's lock, then gives up
        assert scope.cancelled_caught
    assert fakes["fa"].calls("DEL") == []
    assert len(cni._pods.pod_locks) == 0


async def test_teardown_from_cache_includes_subdirectory_plugins(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin], net: Sandbox
) -> None:
    (dirs["conf"] / "subnet.conflist").write_text('{"cniVersion": "1.1.0", "name": "subnet"}')
    (dirs["conf"] / "subnet").mkdir()
    (dirs["conf"] / "subnet" / "10-a.conf").write_text('{"type": "fa"}')
    (dirs["conf"] / "subnet" / "20-c.conf").write_text('{"type": "fc"}')
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        p = pod(net)
        await cni.set_up_pod(p)
        await cni.tear_down_pod(PodNetwork(p.name, p.namespace, p.id, p.uid, p.netns))
    assert len(fakes["fa"].calls("DEL")) == len(fakes["fc"].calls("DEL")) == 1
    assert cache_files(dirs) == []


async def test_teardown_uses_cached_args_and_recorded_ifname(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], dirs: dict[str, Path]
) -> None:
    p = pod(net, ("neta", "net7"))
    await cni.set_up_pod(p)
    # A later request with a bad MAC and no ifname still tears the recorded attachment down.
    later = PodNetwork(
        p.name,
        p.namespace,
        p.id,
        p.uid,
        p.netns,
        [NetAttachment("neta")],
        runtime_config={"neta": RuntimeConfig(mac="bogus")},
    )
    await cni.tear_down_pod(later)
    [call] = fakes["fa"].calls("DEL")
    assert call["env"]["CNI_IFNAME"] == "net7"
    assert cache_files(dirs) == []


async def test_version_probes_are_shared(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    for i in range(8):
        write_conflist(dirs["conf"], f"n{i}", [{"type": "fa"}, {"type": "fb"}])
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        assert len(cni.config.networks) == 8
        await cni.reload()
    assert len(fakes["fa"].calls("VERSION")) == len(fakes["fb"].calls("VERSION")) == 1


async def test_a_failing_version_probe_is_shared_too(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    """A plugin whose VERSION fails slowly costs one run per reload, not one per network, and
    each network's error names that network."""
    fakes["fb"].on("VERSION", stdout={"code": 5, "msg": "broken"}, exit=1, sleep=0.5)
    for i in range(6):
        write_conflist(dirs["conf"], f"n{i}", [{"type": "fa"}, {"type": "fb"}])
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        assert cni.config.networks == ()
        errors = dict(cni.config.invalid)
    assert len(fakes["fb"].calls("VERSION")) == 1
    assert sorted(str(e.network) for e in errors.values()) == [f"n{i}" for i in range(6)]


async def test_a_later_file_stands_in_for_an_unusable_first_of_its_name(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    """As ocicni: duplicates are dropped after validation, not before."""
    write_conflist(dirs["conf"], "podnet", [{"type": "missing"}], filename="05-old.conflist")
    write_conflist(dirs["conf"], "podnet", [{"type": "fa"}], filename="10-new.conflist")
    write_conflist(dirs["conf"], "podnet", [{"type": "fb"}], filename="20-newer.conflist")
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        [network] = cni.config.networks
        assert network.path == str(dirs["conf"] / "10-new.conflist")
        assert cni.default_network_name == "podnet"
        invalid = {os.path.basename(path): str(error) for path, error in cni.config.invalid}
    assert set(invalid) == {"05-old.conflist", "20-newer.conflist"}
    assert "missing" in invalid["05-old.conflist"]
    assert "duplicate network name" in invalid["20-newer.conflist"]


async def test_stale_cache_temporaries_are_removed(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    tmp = dirs["cache"] / "cni_async-tmp"
    tmp.mkdir()
    old = time.time() - 120
    ancient = time.time() - 7200

    def temporary(name: str, mtime: float | None = None) -> None:
        (tmp / name).write_text("{")
        if mtime is not None:
            os.utime(tmp / name, (mtime, mtime))

    temporary("dead-old.999999999-abc", old)  # its writer is gone: removed
    temporary("dead-new.999999999-abc")  # maybe a writer in another PID namespace: kept
    temporary(f"alive-old.{os.getpid()}-abc", old)  # its writer lives: kept
    temporary(f"alive-ancient.{os.getpid()}-abc", ancient)  # no write lasts an hour: removed
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False):
        pass
    assert sorted(os.listdir(tmp)) == [f"alive-old.{os.getpid()}-abc", "dead-new.999999999-abc"]


async def test_empty_intent_records_a_crash_left_are_removed(
    dirs: dict[str, Path], fakes: dict[str, FakePlugin]
) -> None:
    # A new record is named before its fsync: a machine that went down in between leaves it
    # empty. Removed once it is a minute old and nobody holds its lock; any other is kept.
    intents = dirs["cache"] / "cni_async-intents"
    intents.mkdir(mode=0o700)
    old = time.time() - 120

    def record(name: str, data: bytes = b"", mtime: float | None = old) -> None:
        (intents / name).write_bytes(data)
        if mtime is not None:
            os.utime(intents / name, (mtime, mtime))

    record("empty-old")  # removed
    record("empty-new", mtime=None)  # maybe being written right now: kept
    record("written-old", b'{"kind":"cni_async-intent"}')  # not ours to judge here: kept
    record("empty-locked")  # a set-up in flight holds it: kept
    os.mkfifo(intents / "fifo-old")  # never opened, never removed
    os.utime(intents / "fifo-old", (old, old))
    locked = os.open(intents / "empty-locked", os.O_RDONLY)
    try:
        fcntl.flock(locked, fcntl.LOCK_SH)
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
        ):
            pass
    finally:
        os.close(locked)
    assert sorted(os.listdir(intents)) == ["empty-locked", "empty-new", "fifo-old", "written-old"]


async def test_a_pod_cycle_looks_at_its_intent_record_once_per_operation(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-up and teardown each open the record's path once (its lock and its contents in one
    look), and a teardown that found none removes none."""
    p = pod(net, "neta")
    path = cni.engine.cache.intent_path(p.id)
    seen: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()
    real_open, real_unlink = os.open, os.unlink

    def counting_open(name: Any, *args: Any, **kw: Any) -> int:
        if name == path:
            seen.append(("open", threading.get_ident() == loop_thread))
        return real_open(name, *args, **kw)

    def counting_unlink(name: Any, *args: Any, **kw: Any) -> None:
        if name == path:
            seen.append(("unlink", threading.get_ident() == loop_thread))
        real_unlink(name, *args, **kw)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "unlink", counting_unlink)
    await cni.set_up_pod(p)
    # The record is removed once the cache entry is durable, in the write's worker thread.
    assert seen == [("open", True), ("unlink", False)]
    seen.clear()
    await cni.tear_down_pod(p)
    assert seen == [("open", True)]
    assert len(fakes["fa"].calls("DEL")) == 1


async def test_a_teardown_removes_a_record_that_does_not_decode(
    cni: CNIPlugin, net: Sandbox, fakes: dict[str, FakePlugin]
) -> None:
    p = pod(net, "neta")
    cache = cni.engine.cache
    await cni.set_up_pod(p)
    Path(cache.intent_path(p.id)).write_bytes(b"not a record")
    assert cache.look_up_intent(p.id) == (True, False, [])
    await cni.tear_down_pod(p)
    assert not os.path.exists(cache.intent_path(p.id))
    assert len(fakes["fa"].calls("DEL")) == 1


async def test_one_look_finds_a_records_lock_and_contents(cni: CNIPlugin, net: Sandbox) -> None:
    cache = cni.engine.cache
    recorded = [CacheEntry(container_id="c1", network_name="neta", if_name="eth0")]
    assert cache.look_up_intent("c1") == (False, False, [])
    fd = await cache.write_intent_held("c1", recorded)
    try:
        found, in_use, attachments = cache.look_up_intent("c1")
        assert (found, in_use) == (True, True)
        assert [(e.network_name, e.if_name) for e in attachments] == [("neta", "eth0")]
        assert cache.look_up_intent("c1", read=False) == (True, True, [])
    finally:
        os.close(fd)
    assert cache.look_up_intent("c1")[:2] == (True, False)
    await cache.remove_intent("c1")
    os.mkfifo(cache.intent_path("c1"))  # opened without blocking, never read
    assert cache.look_up_intent("c1") == (True, False, [])
