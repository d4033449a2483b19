"""Network namespaces and links for real-plugin tests, all under a unique test prefix.

Everything made here is removed in teardown, even when the test fails: the namespaces, and every
host link whose name starts with the test's prefix (bridges the bridge plugin made, stray veths).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CNI_BIN = "/usr/lib/cni"


def require_real_plugins(*names: str) -> None:
    """Skip unless we are root with Debian's plugins and ``ip``.

    With ``CNI_ASYNC_REQUIRE_PRIVILEGED=1`` (as ``.ci/run`` sets) the test fails instead: in CI
    a skipped namespace test would pass unseen.
    """
    if os.geteuid() != 0:
        unavailable("needs root")
    if shutil.which("ip") is None:
        unavailable("needs iproute2")
    for name in names:
        if not os.access(os.path.join(CNI_BIN, name), os.X_OK):
            unavailable(f"needs {CNI_BIN}/{name} (Debian's containernetworking-plugins)")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it where every test must run."""
    if os.environ.get("CNI_ASYNC_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"{reason}, and CNI_ASYNC_REQUIRE_PRIVILEGED=1 forbids skipping")
    pytest.skip(reason)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def ip_json(*args: str) -> Any:
    return json.loads(ip("-j", *args) or "[]")


class Sandbox:
    """A prefix plus the namespaces made under it."""

    def __init__(self) -> None:
        self.prefix = "cnt" + secrets.token_hex(3)  # short: bridge names must fit 15 bytes
        self.namespaces: list[str] = []

    def netns(self, suffix: str) -> str:
        """Create ``<prefix>-<suffix>`` and return its path."""
        name = f"{self.prefix}-{suffix}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def host_links(self) -> list[str]:
        return [
            link["ifname"]
            for link in ip_json("link", "show")
            if link["ifname"].startswith(self.prefix)
        ]

    def veths_on(self, bridge: str) -> list[str]:
        return [link["ifname"] for link in ip_json("link", "show", "master", bridge)]

    def cleanup(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        for link in self.host_links():
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    net = Sandbox()
    try:
        yield net
    finally:
        net.cleanup()


def addresses(netns_path: str, ifname: str) -> list[str]:
    """``address/prefix`` of every global address of ``ifname`` inside the namespace."""
    name = os.path.basename(netns_path)
    out = ip_json("-n", name, "addr", "show", "dev", ifname)
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in out
        for a in link.get("addr_info", [])
        if a.get("scope") == "global"
    ]


def link_state(netns_path: str, ifname: str) -> list[str]:
    name = os.path.basename(netns_path)
    [link] = ip_json("-n", name, "link", "show", "dev", ifname)
    return list(link["flags"])


def node_plugins(net: Sandbox, bin_dir: str, *names: str) -> str:
    """A bin dir of wrappers that run Debian's plugins inside a "node" namespace of the test.

    Bridges, host-side veths, gateway addresses and iptables rules then all live in a namespace
    the test made, never in the machine's own. Returns the wrappers' directory.
    """
    node = os.path.basename(net.netns("node"))
    ip("-n", node, "link", "set", "lo", "up")
    os.makedirs(bin_dir, exist_ok=True)
    for name in names:
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nexec ip netns exec {node} {CNI_BIN}/{name}\n")
        os.chmod(path, 0o755)
    return bin_dir
