"""The engine against Debian's real plugins, in namespaces these tests make and remove."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from cni_async import CNIEngine, Result100, RuntimeConf, convert_result, parse_conflist

from ..support.netns import CNI_BIN, Sandbox, addresses, link_state, require_real_plugins, sandbox

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]


@pytest.fixture
def net() -> Iterator[Sandbox]:
    require_real_plugins("bridge", "host-local", "loopback")
    with sandbox() as s:
        yield s


def leases(data_dir: Path) -> list[str]:
    """host-local's lease files (one per allocated address, named by it)."""
    return sorted(f for f in os.listdir(data_dir) if f[0].isdigit())


def bridge_conflist(net: Sandbox, tmp_path: Path, subnet: str, version: str = "1.0.0") -> bytes:
    # No isGateway / ipMasq: the bridge gets no address in the host namespace and no iptables
    # rules are written; every address lives inside the test's own namespaces.
    return json.dumps(
        {
            "cniVersion": version,
            "name": f"{net.prefix}-net",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": f"{net.prefix}br0",
                    "ipam": {
                        "type": "host-local",
                        "subnet": subnet,
                        "dataDir": str(tmp_path / "ipam"),
                    },
                }
            ],
        }
    ).encode()


async def test_loopback_plugin_brings_lo_up(net: Sandbox, tmp_path: Path) -> None:
    netns = net.netns("lo")
    engine = CNIEngine([CNI_BIN], cache_dir=str(tmp_path / "cache"))
    netlist = parse_conflist(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "lo", "plugins": [{"type": "loopback"}]}
        ).encode()
    )
    rt = RuntimeConf(container_id=f"{net.prefix}-c1", netns=netns, ifname="lo")
    assert "UP" not in link_state(netns, "lo")
    await engine.add_network_list(netlist, rt)
    assert "UP" in link_state(netns, "lo")
    await engine.del_network_list(netlist, rt)
    assert await engine.get_cached_attachments() == []


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
async def test_bridge_add_check_del(net: Sandbox, tmp_path: Path, version: str) -> None:
    netns = net.netns("pod")
    cache = tmp_path / "cache"
    engine = CNIEngine([CNI_BIN], cache_dir=str(cache))
    netlist = parse_conflist(bridge_conflist(net, tmp_path, "10.213.7.0/24", version))
    rt = RuntimeConf(container_id=f"{net.prefix}-c1", netns=netns, ifname="eth0")

    result = convert_result(await engine.add_network_list(netlist, rt), "1.1.0")
    assert isinstance(result, Result100)
    [ip] = result.ips
    assert ip.address.startswith("10.213.7.")
    assert addresses(netns, "eth0") == [ip.address]
    sandbox_ifaces = [i for i in result.interfaces if i.sandbox == netns]
    assert [i.name for i in sandbox_ifaces] == ["eth0"]
    [veth] = net.veths_on(f"{net.prefix}br0")
    assert leases(tmp_path / "ipam" / f"{net.prefix}-net") == [ip.address.split("/")[0]]
    assert len(os.listdir(cache / "results")) == 1

    await engine.check_network_list(netlist, rt)

    await engine.del_network_list(netlist, rt)
    assert net.veths_on(f"{net.prefix}br0") == []
    assert veth not in net.host_links()
    assert leases(tmp_path / "ipam" / f"{net.prefix}-net") == []
    assert os.listdir(cache / "results") == []


async def test_concurrent_attachments(net: Sandbox, tmp_path: Path) -> None:
    engine = CNIEngine([CNI_BIN], cache_dir=str(tmp_path / "cache"))
    netlist = parse_conflist(bridge_conflist(net, tmp_path, "10.213.8.0/24"))
    rts = [
        RuntimeConf(container_id=f"{net.prefix}-c{i}", netns=net.netns(f"p{i}"), ifname="eth0")
        for i in range(6)
    ]
    found: dict[str, str] = {}

    async def cycle(rt: RuntimeConf) -> None:
        result = convert_result(await engine.add_network_list(netlist, rt), "1.1.0")
        assert isinstance(result, Result100)
        found[rt.container_id] = result.ips[0].address
        assert addresses(rt.netns, "eth0") == [result.ips[0].address]

    async with anyio.create_task_group() as tg:
        for rt in rts:
            tg.start_soon(cycle, rt)
    assert len(set(found.values())) == len(rts)
    assert len(await engine.get_cached_attachments()) == len(rts)

    await engine.gc_network_list(netlist, [(rts[0].container_id, "eth0")])
    left = await engine.get_cached_attachments()
    assert [(e.container_id, e.if_name) for e in left] == [(rts[0].container_id, "eth0")]
    assert len(net.veths_on(f"{net.prefix}br0")) == 1
    await engine.del_network_list(netlist, rts[0])
    assert net.veths_on(f"{net.prefix}br0") == []
    assert leases(tmp_path / "ipam" / f"{net.prefix}-net") == []
