"""A fake of the ``Namespaces`` seam, so that pod logic runs unprivileged over fake plugins.

Nothing is made in a real network namespace: the pod paths are never opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from cni_async import CNIPlugin, InterfaceState, NamespaceError


class FakeNamespaces:
    """Namespaces that exist as long as the test says so; ``lo`` comes up when asked."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.lo_up: set[str] = set()
        self.interfaces: dict[tuple[str, str], InterfaceState] = {}

    def add(self, name: str) -> str:
        path = f"/fake/netns/{name}"
        self.present.add(path)
        return path

    @contextmanager
    def loopback_up(self, netns: str) -> Iterator[Callable[[], None]]:
        if netns not in self.present:
            raise NamespaceError(f"no namespace {netns}", netns=netns)
        yield lambda: self.lo_up.add(netns)

    async def loopback_is_up(self, netns: str) -> bool:
        await anyio.lowlevel.checkpoint()
        if netns not in self.present:
            raise NamespaceError(f"no namespace {netns}", netns=netns)
        return netns in self.lo_up

    async def interface_state(self, netns: str, ifname: str) -> InterfaceState | None:
        await anyio.lowlevel.checkpoint()
        return self.interfaces.get((netns, ifname))

    def exists(self, netns: str) -> bool:
        return netns in self.present

    def host_namespace(self, netns: str) -> str | None:
        return "this process's own" if netns == "/fake/netns/host" else None


def fake_cni(dirs: dict[str, Path], namespaces: FakeNamespaces, **kwargs: Any) -> CNIPlugin:
    """A ``CNIPlugin`` over ``dirs`` (``conf``, ``bin``, ``cache``) and the fake seam; not
    watching, so each test decides when the configuration is read."""
    return CNIPlugin(
        str(dirs["conf"]),
        [str(dirs["bin"])],
        str(dirs["cache"]),
        watch=False,
        cleanup_timeout=10,
        namespaces=namespaces,
        **kwargs,
    )
