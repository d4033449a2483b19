"""The cni-async command line, run as a real process against fake plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..support.cli import cli_command, cli_env, run_cli
from ..support.netns import Sandbox, addresses, node_plugins, require_real_plugins
from ..support.plugins import FakePlugin, write_conflist


def cli(
    dirs: dict[str, Path], *args: str, cwd: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The installed console script (else ``python -m cni_async``) on ``dirs``."""
    return run_cli(dirs, *args, cwd=cwd, **env)


@pytest.fixture
def fake(dirs: dict[str, Path]) -> FakePlugin:
    write_conflist(dirs["conf"], "net1", [{"type": "fa", "capabilities": {"portMappings": True}}])
    return FakePlugin(dirs["bin"], "fa")


def test_networks(dirs: dict[str, Path], fake: FakePlugin) -> None:
    write_conflist(dirs["conf"], "ghost", [{"type": "missing"}], filename="00-ghost.conflist")
    (dirs["conf"] / "99-bad.conflist").write_text("{")
    out = cli(dirs, "networks", "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    assert report["default"] == "net1"
    assert [(n["name"], n["usable"]) for n in report["networks"]] == [
        ("ghost", False),
        ("net1", True),
    ]
    assert "missing" in report["networks"][0]["problem"]
    [bad] = report["invalid"]
    assert bad["file"].endswith("99-bad.conflist")
    human = cli(dirs, "networks")
    assert "default network: net1" in human.stdout and "NOT USABLE" in human.stdout


def test_add_check_del_like_cnitool(dirs: dict[str, Path], fake: FakePlugin) -> None:
    env = {
        "CAP_ARGS": '{"portMappings": [{"hostPort": 8080, "containerPort": 80}]}',
        "CNI_ARGS": "K8S_POD_NAME=web;FOO=bar",
        "CNI_IFNAME": "net0",
    }
    added = cli(dirs, "add", "net1", "/run/netns/cli-test", **env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["ips"][0]["address"] == "10.99.0.2/24"
    [call] = fake.calls("ADD")
    assert call["env"]["CNI_CONTAINERID"].startswith("cnitool-")
    assert len(call["env"]["CNI_CONTAINERID"]) == len("cnitool-") + 20
    assert call["env"]["CNI_IFNAME"] == "net0"
    assert call["env"]["CNI_ARGS"] == "K8S_POD_NAME=web;FOO=bar"
    assert json.loads(call["stdin"])["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert cli(dirs, "check", "net1", "/run/netns/cli-test", **env).returncode == 0
    assert cli(dirs, "del", "net1", "/run/netns/cli-test", **env).returncode == 0
    assert json.loads(fake.calls("DEL")[0]["stdin"])["prevResult"]["ips"]
    assert os.listdir(dirs["cache"] / "results") == []


def test_errors_are_messages_not_tracebacks(dirs: dict[str, Path], fake: FakePlugin) -> None:
    missing = cli(dirs, "add", "nope", "/run/netns/x")
    assert missing.returncode == 1
    assert "no net configuration with name" in missing.stderr
    assert "Traceback" not in missing.stderr
    fake.on("STATUS", stdout={"code": 50, "msg": "no addresses left"}, exit=1)
    status = cli(dirs, "status", "net1")
    assert status.returncode == 1 and "no addresses left" in status.stderr
    bad_env = cli(dirs, "add", "net1", "/run/netns/x", CAP_ARGS="{not json")
    assert bad_env.returncode == 2 and "CAP_ARGS" in bad_env.stderr
    for bad_args in ("A=1;;B=2", "A=b=c", "A"):  # as libcni's LoadArgs
        refused = cli(dirs, "add", "net1", "/run/netns/x", CNI_ARGS=bad_args)
        assert refused.returncode == 2 and "CNI_ARGS" in refused.stderr
    assert fake.calls("ADD") == []
    assert cli(dirs, "frobnicate").returncode == 2


def test_relative_netns_path_is_made_absolute(
    dirs: dict[str, Path], fake: FakePlugin, tmp_path: Path
) -> None:
    """As cnitool: the cache must record a path that resolves from anywhere."""
    (tmp_path / "ns").write_text("")
    added = cli(dirs, "add", "net1", "ns", cwd=str(tmp_path))
    assert added.returncode == 0, added.stderr
    assert fake.calls("ADD")[0]["env"]["CNI_NETNS"] == str(tmp_path / "ns")


def test_watch_streams_events(dirs: dict[str, Path], fake: FakePlugin) -> None:
    environment = cli_env(NETCONFPATH=str(dirs["conf"]), CNI_PATH=str(dirs["bin"]))
    with subprocess.Popen(
        [*cli_command(), "watch"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = [json.loads(proc.stdout.readline()) for _ in range(4)]
            assert first[0] == {
                "event": "NetworkAdded",
                "name": "net1",
                "path": str(dirs["conf"] / "net1.conflist"),
            }
            write_conflist(dirs["conf"], "net2", [{"type": "fa"}], filename="00-net2.conflist")
            events = [json.loads(proc.stdout.readline())["event"] for _ in range(3)]
            assert events[0] == "NetworkAdded" and "DefaultNetworkChanged" in events
        finally:
            proc.terminate()


@pytest.mark.privileged
def test_pod_verbs_take_ocicnitools_arguments(
    dirs: dict[str, Path], fake: FakePlugin, net: Sandbox
) -> None:
    write_conflist(dirs["conf"], "net2", [{"type": "fb"}], filename="zz-net2.conflist")
    other = FakePlugin(dirs["bin"], "fb")
    other.on("ADD", ip="10.98.0.7/24")
    netns = net.netns("cli")
    cid = f"{net.prefix}-cli"
    # ocicnitool's environment names, and its single-dash -networks flag
    env = {"CONF_PATH": str(dirs["conf"]), "BIN_PATH": str(dirs["bin"]), "CNI_ARGS": "X=1"}
    bare = {"NETCONFPATH": "", "CNI_PATH": ""}
    add = cli(dirs, "pod", "add", "ns1", "web", cid, netns, "-networks", "net1,net2", **env, **bare)
    assert add.returncode == 0, add.stderr
    assert add.stdout.split() == ["net1", "eth0", "10.99.0.2/24", "net2", "eth1", "10.98.0.7/24"]
    [call] = other.calls("ADD")
    assert "X=1" in call["env"]["CNI_ARGS"].split(";")
    assert f"K8S_POD_INFRA_CONTAINER_ID={cid}" in call["env"]["CNI_ARGS"]
    status = cli(dirs, "pod", "status", "ns1", "web", cid, netns, "--networks=net1,net2", "--json")
    assert status.returncode == 0, status.stderr
    [_, net2] = json.loads(status.stdout)
    assert (net2["name"], net2["ifname"]) == ("net2", "eth1")
    assert net2["result"]["ips"][0]["address"] == "10.98.0.7/24"
    assert len(fake.calls("CHECK")) == len(other.calls("CHECK")) == 1
    # teardown finds both attachments in the cache, without -networks
    assert cli(dirs, "pod", "del", "ns1", "web", cid, netns).returncode == 0
    assert len(fake.calls("DEL")) == len(other.calls("DEL")) == 1
    assert os.listdir(dirs["cache"] / "results") == []
    gone = cli(dirs, "pod", "status", "ns1", "web", cid, "/run/netns/does-not-exist")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr


def test_bench_needs_its_arguments_only() -> None:
    out = subprocess.run(
        [*cli_command(), "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "--concurrency" in out.stdout and "--config" in out.stdout


def console_script() -> str:
    """The installed ``cni-async`` entry point, next to this interpreter."""
    script = Path(sys.executable).with_name("cni-async")
    if not script.exists():
        pytest.skip("the cni-async console script is not installed (pip install -e .)")
    return str(script)


@pytest.mark.privileged
def test_console_script_on_real_plugins(tmp_path: Path, net: Sandbox) -> None:
    """The installed script, cnitool's verbs, Debian's bridge and host-local in a node netns."""
    require_real_plugins("bridge", "host-local")
    conf, ipam = tmp_path / "conf", tmp_path / "ipam"
    bridge = {
        "type": "bridge",
        "bridge": f"{net.prefix}b",
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.215.3.0/24", "dataDir": str(ipam)},
    }
    write_conflist(conf, "realnet", [bridge], version="1.0.0")
    env = {
        **os.environ,
        "NETCONFPATH": str(conf),
        "CNI_PATH": node_plugins(net, str(tmp_path / "bin"), "bridge", "host-local"),
        "CNI_CACHE_DIR": str(tmp_path / "cache"),
    }
    netns = net.netns("real")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script(), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    listed = run("networks", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["default"] == "realnet"
    added = run("add", "realnet", netns)
    assert added.returncode == 0, added.stderr
    [address] = [ip["address"] for ip in json.loads(added.stdout)["ips"]]
    assert address.startswith("10.215.3.")
    assert addresses(netns, "eth0") == [address]
    assert run("check", "realnet", netns).returncode == 0
    leases = [f for f in os.listdir(ipam / "realnet") if f[0].isdigit()]
    assert leases == [address.split("/")[0]]
    deleted = run("del", "realnet", netns)
    assert deleted.returncode == 0, deleted.stderr
    assert [f for f in os.listdir(ipam / "realnet") if f[0].isdigit()] == []
    assert os.listdir(tmp_path / "cache" / "results") == []
