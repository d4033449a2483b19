"""Netlink inside a pod's network namespace, with pyroute2 and without forking.

A netlink socket stays bound to the namespace it was created in, so only its creation needs to
happen inside the pod's namespace. Each call runs in a short-lived thread of its own that
``setns()``es into the namespace, opens the socket, returns to its own namespace and then uses the
socket; no pooled worker thread ever enters another namespace. (pyroute2's own ``netns=`` option
forks a helper process per socket, several times slower.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio

from ._errors import NamespaceError

__all__ = ["InterfaceState", "interface_state", "loopback_up"]

T = TypeVar("T")

_CLONE_NEWNET: Final = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _in_namespace(netns: str, work: Callable[[Any], T]) -> T:
    """Run ``work(ipr)`` with an ``IPRoute`` whose socket lives in ``netns`` (in this thread)."""
    from pyroute2 import IPRoute  # imported here: only pod operations need pyroute2

    with open(netns, "rb") as target, open("/proc/thread-self/ns/net", "rb") as home:
        _setns(target.fileno())
        try:
            ipr = IPRoute()
        finally:
            _setns(home.fileno())
    with ipr:
        return work(ipr)


async def _run_in_namespace(netns: str, work: Callable[[Any], T]) -> T:
    outcome: list[T] = []
    failure: list[BaseException] = []

    def thread_main() -> None:
        try:
            outcome.append(_in_namespace(netns, work))
        except BaseException as exc:  # noqa: BLE001 - handed back to the awaiting task
            failure.append(exc)

    def run_dedicated() -> None:
        thread = threading.Thread(target=thread_main, name="cni_async-netns", daemon=True)
        thread.start()
        thread.join()

    await anyio.to_thread.run_sync(run_dedicated)
    if failure:
        exc = failure[0]
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EINVAL):
            raise NamespaceError(
                f"network namespace {netns!r} does not exist or is not a network namespace",
                netns=netns,
            ) from exc
        if isinstance(exc, Exception):  # pyroute2's NetlinkError is not an OSError
            raise NamespaceError(
                f"netlink in network namespace {netns!r} failed: {exc}", netns=netns
            ) from exc
        raise exc
    return outcome[0]


def _set_lo_up(ipr: Any) -> None:
    [index] = ipr.link_lookup(ifname="lo")
    ipr.link("set", index=index, state="up")


async def loopback_up(netns: str) -> None:
    """Bring ``lo`` up inside the namespace at path ``netns``.

    :raises NamespaceError: if the namespace does not exist
    """
    await _run_in_namespace(netns, _set_lo_up)


class InterfaceState:
    """What netlink says about one interface: its flags, MAC and global addresses."""

    __slots__ = ("addresses", "mac", "up")

    def __init__(self, up: bool, mac: str, addresses: list[str]) -> None:
        self.up = up
        self.mac = mac
        self.addresses = addresses


def _read_interface(ifname: str) -> Callable[[Any], InterfaceState | None]:
    def work(ipr: Any) -> InterfaceState | None:
        indexes = ipr.link_lookup(ifname=ifname)
        if not indexes:
            return None
        [link] = ipr.get_links(indexes[0])
        up = bool(link["flags"] & 1)  # IFF_UP
        mac = link.get_attr("IFLA_ADDRESS") or ""
        addresses = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=indexes[0])
            if a["scope"] == 0  # RT_SCOPE_UNIVERSE: global addresses only
        ]
        return InterfaceState(up, mac, addresses)

    return work


async def interface_state(netns: str, ifname: str) -> InterfaceState | None:
    """The state of ``ifname`` inside the namespace at ``netns``; ``None`` if it is absent.

    :raises NamespaceError: if the namespace does not exist
    """
    return await _run_in_namespace(netns, _read_interface(ifname))
