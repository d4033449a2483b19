"""The pod layer's seam to network namespaces: a protocol, and its netlink implementation.

Everything [`CNIPlugin`][cni_async.CNIPlugin] does inside a pod's namespace goes through one
[`Namespaces`][cni_async.Namespaces] object: bring ``lo`` up, read ``lo``'s flags and an
interface's state, tell whether a namespace path still exists and whether it is the runtime's
own (or PID 1's). The default, [`NetlinkNamespaces`][cni_async.NetlinkNamespaces], does it
with netlink and needs root. A fake of it lets the pod logic (rollback, teardown from the
cache, GC, every cancellation point) run without root or namespaces, as
[`PluginExecutor`][cni_async.libcni.PluginExecutor] fakes do for plugins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import anyio

from .netns import (
    InterfaceState,
    host_namespace,
    interface_state,
    loopback_is_up,
    loopback_up_blocking,
)

__all__ = ["InterfaceState", "Namespaces", "NetlinkNamespaces", "usable_netns"]

logger = logging.getLogger("cni_async")


class Namespaces(Protocol):
    """What the pod layer does in network namespaces.

    Every method may raise [`NamespaceError`][cni_async.NamespaceError] for a namespace that
    does not exist or that the kernel refuses to work in.
    """

    def loopback_up(self, netns: str) -> AbstractContextManager[Callable[[], None]]:
        """A context whose value brings ``lo`` up in ``netns`` when called (blocking, from a
        worker thread that writes the set-up's intent record too)."""
        ...

    async def loopback_is_up(self, netns: str) -> bool:
        """Whether ``lo`` is up in ``netns``."""
        ...

    async def interface_state(self, netns: str, ifname: str) -> InterfaceState | None:
        """``ifname``'s flags, MAC and global addresses in ``netns``; ``None`` if it is absent."""
        ...

    def exists(self, netns: str) -> bool:
        """Whether the namespace path still exists (cheap: called on every teardown)."""
        ...

    def host_namespace(self, netns: str) -> str | None:
        """Whose namespace ``netns`` is, when it is this process's own or PID 1's (a phrase for
        messages, such as ``"this process's own"``); ``None`` for any other."""
        ...


class NetlinkNamespaces:
    """[`Namespaces`][cni_async.Namespaces] with netlink, entering each namespace only to make
    a socket in it (root, or ``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN``)."""

    def loopback_up(self, netns: str) -> AbstractContextManager[Callable[[], None]]:
        return loopback_up_blocking(netns)

    async def loopback_is_up(self, netns: str) -> bool:
        return await loopback_is_up(netns)

    async def interface_state(self, netns: str, ifname: str) -> InterfaceState | None:
        return await interface_state(netns, ifname)

    def exists(self, netns: str) -> bool:
        # A stat of a bind mount on tmpfs (/run/netns): not worth a worker thread.
        return os.path.exists(netns)

    def host_namespace(self, netns: str) -> str | None:
        return host_namespace(netns)


async def usable_netns(namespaces: Namespaces, netns: str, *, allow_host: bool = False) -> str:
    """``netns`` if that namespace still exists, else ``""`` (DEL accepts an empty CNI_NETNS).

    The runtime's own namespace and PID 1's are ``""`` too (unless ``allow_host``): a DEL there
    could delete the host's interface, while an empty ``CNI_NETNS`` still releases the IPAM.
    """
    await anyio.lowlevel.checkpoint()
    if not netns or not namespaces.exists(netns):
        return ""
    if not allow_host and (who := namespaces.host_namespace(netns)) is not None:
        logger.warning(
            "%s is %s network namespace, not a pod's: DEL gets an empty CNI_NETNS", netns, who
        )
        return ""
    return netns
