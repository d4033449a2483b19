"""A node shared with a real second runtime: Debian's podman (libcni) on its CNI backend.

Both runtimes use one podman network (a conflist in podman's configuration directory, the
same file for both), Debian's real plugins, and libcni's default cache directory
``/var/lib/cni``, shared as it is on a real node. Everything networked lives in the test's
"node" namespace (see ``tests/support/podman.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from cni_async import CNIPlugin, NetAttachment, PodNetwork, PortMapping, RuntimeConfig

from ..support.netns import Sandbox, addresses, node_plugins, require_real_plugins, sandbox
from ..support.podman import SHARED_CACHE, Podman, require_podman

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]

PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")


@dataclass
class Node:
    net: Sandbox
    network: str  # the podman network's name
    subnet: str
    podman: Podman
    bin_dir: str
    node: str  # the node namespace's name

    def plugin(self, conf_dir: Path | None = None, **kw: object) -> CNIPlugin:
        """Our runtime on the node: podman's network, Debian's plugins, the shared cache."""
        return CNIPlugin(
            str(conf_dir or self.podman.network_dir),
            [self.bin_dir],
            str(SHARED_CACHE),
            watch=False,
            **kw,  # type: ignore[arg-type]
        )

    def pod(self, name: str, **kw: object) -> PodNetwork:
        return PodNetwork(
            name,
            "ns1",
            f"{self.net.prefix}-{name}",
            f"uid-{name}",
            self.net.netns(name),
            [NetAttachment(self.network)],
            **kw,  # type: ignore[arg-type]
        )

    def cached(self) -> list[str]:
        """The shared cache's entries of this network (both runtimes')."""
        results = SHARED_CACHE / "results"
        prefix = f"{self.network}-"
        return sorted(n for n in os.listdir(results) if n.startswith(prefix))

    def leases(self) -> list[str]:
        data = SHARED_CACHE / "networks" / self.network
        return sorted(f for f in os.listdir(data) if f[0].isdigit()) if data.exists() else []

    def in_node(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.node, *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    require_real_plugins(*PLUGINS)
    require_podman()
    with sandbox() as net:
        bin_dir = node_plugins(net, str(tmp_path / "bin"), *PLUGINS)
        node_netns = f"/run/netns/{net.prefix}-node"
        network, octet = f"{net.prefix}-pm", int(net.prefix[-2:], 16)
        subnet = f"10.232.{octet}.0/24"
        network_dir = tmp_path / "podman-networks"
        network_dir.mkdir()
        # What `podman network create` writes, with our bridge name (podman 4.3 cannot set it).
        conflist = {
            "cniVersion": "0.4.0",
            "name": network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": f"{net.prefix}pb",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ranges": [[{"subnet": subnet, "gateway": subnet[:-4] + "1"}]],
                    },
                    "capabilities": {"ips": True},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": ""},
                {"type": "tuning"},
            ],
        }
        (network_dir / f"{network}.conflist").write_text(json.dumps(conflist))
        # podman refuses a run root longer than 50 characters: pytest's tmp_path can be.
        base = Path(tempfile.mkdtemp(prefix=f"{net.prefix}-", dir="/tmp"))
        podman = Podman(base, node_netns, network_dir)
        try:
            yield Node(net, network, subnet, podman, bin_dir, f"{net.prefix}-node")
        finally:
            podman.remove_all()
            podman.remove_storage()
            shutil.rmtree(SHARED_CACHE / "networks" / network, ignore_errors=True)
            for name in (
                os.listdir(SHARED_CACHE / "results") if (SHARED_CACHE / "results").exists() else ()
            ):
                if name.startswith(f"{network}-"):
                    (SHARED_CACHE / "results" / name).unlink(missing_ok=True)


@pytest.fixture
async def started(node: Node) -> str:
    """A podman container on the network (removed with the node); its address."""
    await node.podman.start(f"{node.net.prefix}-c1", node.network)
    return await node.podman.address(f"{node.net.prefix}-c1", node.network)


async def test_pods_of_both_runtimes_reach_each_other(node: Node, started: str) -> None:
    pod = node.pod("p1")
    async with node.plugin() as cni:
        [result] = await cni.set_up_pod(pod)
        ours = result.result.ips[0].address.split("/")[0]
        assert ours != started
        ping = subprocess.run(
            ["ip", "netns", "exec", os.path.basename(pod.netns),
             "busybox", "ping", "-c1", "-W5", started],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        await node.podman.exec(f"{node.net.prefix}-c1", "ping", "-c1", "-W5", ours)
        await cni.tear_down_pod(pod)


async def test_no_address_is_given_twice_under_concurrent_allocation(
    node: Node, started: str
) -> None:
    """8 of our set-ups and 3 podman runs at once, on a network already in use (the firewall
    plugin's first ADD creates its chains without a lock: concurrent first ADDs race there,
    in every runtime)."""
    ours = [node.pod(f"p{i}") for i in range(8)]
    got: list[str] = [started]
    async with node.plugin() as cni:

        async def set_up(pod: PodNetwork) -> None:
            [result] = await cni.set_up_pod(pod)
            got.append(result.result.ips[0].address.split("/")[0])

        async def podman_run(index: int) -> None:
            name = f"{node.net.prefix}-r{index}"
            await node.podman.start(name, node.network)
            got.append(await node.podman.address(name, node.network))

        async with anyio.create_task_group() as tg:
            for pod in ours:
                tg.start_soon(set_up, pod)
            for index in range(3):
                tg.start_soon(podman_run, index)
        assert len(got) == 12
        assert len(set(got)) == 12, sorted(got)
        assert len(node.leases()) == 12
        for pod in ours:
            await cni.tear_down_pod(pod)
    assert len(node.leases()) == 4  # podman's stay


async def test_port_mappings_work_and_nothing_of_ours_stays(node: Node, started: str) -> None:
    mapping = PortMapping(18080, 8080)
    pod = node.pod("web", runtime_config={node.network: RuntimeConfig(port_mappings=[mapping])})
    gateway = node.subnet[:-4] + "1"
    theirs = _rules(node.in_node("iptables-save").stdout)
    async with node.plugin() as cni:
        [result] = await cni.set_up_pod(pod)
        pod_ip = result.result.ips[0].address.split("/")[0]
        server = subprocess.Popen(
            ["ip", "netns", "exec", os.path.basename(pod.netns),
             "busybox", "httpd", "-f", "-p", "8080", "-h", str(node.podman.rootfs / "www")],
        )  # fmt: skip
        try:
            # busybox's static wget crashes resolving even a literal address; nc does not.
            request = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc {gateway} 18080"
            with anyio.fail_after(20):
                while True:  # the server listens within milliseconds; the request proves it
                    reply = await node.podman.run(
                        "exec", f"{node.net.prefix}-c1", "sh", "-c", request, check=False
                    )
                    if reply:
                        break
                    await anyio.sleep(0.2)
            assert reply.endswith("\r\n\r\nhello from podman\n")
        finally:
            server.kill()
            server.wait()
        await cni.tear_down_pod(pod)
    after = node.in_node("iptables-save").stdout
    ours = [rule for rule in _rules(after) if rule not in theirs]
    # What stays is portmap's shared skeleton (its chains and their jumps), nothing of the pod.
    assert all("CNI-HOSTPORT" in rule for rule in ours), ours
    assert pod.id not in after
    assert "18080" not in after
    assert f"{pod_ip}/32" not in after
    assert theirs == [rule for rule in _rules(after) if rule in theirs]
    assert node.cached() == [f"{node.network}-{_podman_id(node, 'c1')}-eth0"]


async def test_gc_and_teardown_never_touch_the_other_runtimes_attachments(
    node: Node, started: str, tmp_path: Path
) -> None:
    theirs = node.cached()
    assert len(theirs) == 1
    leases = node.leases()
    pod = node.pod("p1")
    elsewhere = tmp_path / "other-conf"
    elsewhere.mkdir()
    # A runtime without the network in its configuration: GC never touches it.
    async with node.plugin(conf_dir=elsewhere) as other:
        await other.gc([])
    # Ours, on podman's network, with an owner: GC and teardown leave podman's attachment.
    async with node.plugin(owner="cni-async-tests") as cni:
        await cni.set_up_pod(pod)
        await cni.gc([pod])
        await cni.tear_down_pod(pod)
        await cni.gc([])
    assert node.cached() == theirs
    assert node.leases() == leases
    # Podman's container still has its address and podman still removes it cleanly.
    c1 = f"{node.net.prefix}-c1"
    assert started in await node.podman.exec(c1, "ip", "-4", "addr", "show", "eth0")
    await node.podman.run("rm", "--force", "--time=0", c1)
    node.podman.containers.remove(c1)
    assert node.cached() == []
    assert node.leases() == []
    assert addresses(f"/run/netns/{node.node}", f"{node.net.prefix}pb") == [
        node.subnet[:-4] + "1/24"
    ]


def _podman_id(node: Node, name: str) -> str:
    return node.podman.run_sync(
        "inspect", "--format", "{{.Id}}", f"{node.net.prefix}-{name}"
    ).strip()


def _rules(saved: str) -> list[str]:
    """The rules of an ``iptables-save``, sorted."""
    return sorted(line for line in saved.splitlines() if line.startswith("-A"))
