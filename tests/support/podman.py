"""A real second runtime on the node: Debian's podman on its CNI backend.

Podman runs inside the test's "node" namespace (entered with ``nsenter --net``, which, unlike
``ip netns exec``, keeps the cgroup mounts runc needs), so the bridge, the host side of every
veth and the iptables rules of its plugins live there, never in the machine's own namespace.
Its storage, run and configuration directories are the test's own; only the CNI cache
(``/var/lib/cni``, libcni's default, shared on purpose) and podman's own container namespaces
under ``/run/netns`` are the machine's, and the test removes what it made there.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import anyio

from .netns import unavailable

SHARED_CACHE = Path("/var/lib/cni")
BUSYBOX = "/bin/busybox"  # Debian's busybox-static: no shared libraries to copy
APPLETS = ("sh", "sleep", "ping", "ip", "nc", "printf", "cat")


def require_podman() -> None:
    """Skip unless podman, runc and a static busybox are installed (fail in CI)."""
    for tool in ("podman", "runc", "nsenter"):
        if shutil.which(tool) is None:
            unavailable(f"needs {tool} (.ci/setup installs podman, runc and busybox-static)")
    if not os.access(BUSYBOX, os.X_OK) or _dynamic(BUSYBOX):
        unavailable(f"needs a static {BUSYBOX} (Debian's busybox-static)")


def _dynamic(path: str) -> bool:
    """Whether the ELF executable at ``path`` names a dynamic loader (a PT_INTERP header)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:5] != b"\x7fELF\x02":  # 64-bit ELF only; anything else counts as unusable
            return True
        (phoff,) = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(
        struct.unpack_from("<I", table, i * phentsize)[0] == 3  # PT_INTERP
        for i in range(phnum)
    )


def busybox_rootfs(path: Path) -> Path:
    """A root filesystem holding only a static busybox and its applets."""
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "www"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "www" / "index.html").write_text("hello from podman\n")
    return path


class Podman:
    """``podman`` with the test's own directories, run inside the node namespace."""

    def __init__(self, base: Path, node_netns: str, network_dir: Path) -> None:
        self.base = base
        self.network_dir = network_dir
        self.rootfs = busybox_rootfs(base / "rootfs")
        self.containers: list[str] = []
        self._command = [
            "nsenter",
            f"--net={node_netns}",
            "podman",
            "--network-backend=cni",
            f"--network-config-dir={network_dir}",
            f"--root={base / 'root'}",
            f"--runroot={base / 'run'}",
            f"--tmpdir={base / 'tmp'}",
            "--runtime=runc",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
        ]

    def run_sync(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [*self._command, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    async def run(self, *args: str, check: bool = True) -> str:
        done = await anyio.run_process([*self._command, *args], check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    async def start(self, name: str, network: str, *command: str) -> str:
        """Start a container on ``network`` (in the background); return its ID."""
        self.containers.append(name)
        # Shielded: a podman run killed half-way leaves its network namespace behind, which
        # no later `podman rm` removes. On these machines runc may not raise rlimits: the
        # defaults podman asks for fail, so ask for what the machine allows; NET_RAW: ping.
        with anyio.CancelScope(shield=True):
            out = await self.run(
                "run", "-d", "--name", name, "--network", network,
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
                "--cap-add", "NET_RAW", "--rootfs", str(self.rootfs),
                *(command or ("/bin/sleep", "600")),
            )  # fmt: skip
        return out.strip()

    async def address(self, name: str, network: str) -> str:
        info: list[dict[str, Any]] = json.loads(await self.run("inspect", name))
        return str(info[0]["NetworkSettings"]["Networks"][network]["IPAddress"])

    async def exec(self, name: str, *command: str) -> str:
        return await self.run("exec", name, *command)

    def remove_all(self) -> None:
        """Remove the test's containers (podman sends DEL), whatever state they are in."""
        if self.containers:
            self.run_sync("rm", "--force", "--time=0", *self.containers, check=False)
        self.containers.clear()

    def remove_storage(self) -> None:
        """Unmount and delete the test's podman directories (after ``remove_all``)."""
        subprocess.run(
            ["umount", "--recursive", "--lazy", str(self.base / "root")],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)
