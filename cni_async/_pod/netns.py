"""Netlink inside a pod's network namespace, without forking.

A netlink socket stays bound to the namespace it was created in, so only its creation needs to
happen inside the pod's namespace: the calling thread ``setns()``es in, creates the socket and
returns at once (about 50 us, measured). The exchange itself runs in a worker thread, because
the kernel serves it under its global RTNL lock, which plugins hold while they build bridges and
veths; no worker thread ever enters another namespace. Each call sends exactly the requests it
needs (pyroute2's own ``netns=`` option forks a helper process per socket, many times slower).

Bringing ``lo`` up, on every pod's hot path, is a fixed 32-byte message packed with
``struct``; reading its flags is a ``SIOCGIFFLAGS`` ioctl, which the kernel answers without
the RTNL lock, so it runs in the calling thread. pyroute2's message classes are imported, and
used, only to read an interface's addresses (a status without a cached result), since importing
pyroute2 alone costs more CPU than hundreds of pod cycles spend on netlink.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import anyio

from .._errors import ERR_TRY_AGAIN_LATER, NamespaceError

__all__ = [
    "InterfaceState",
    "host_namespace",
    "interface_state",
    "loopback_is_up",
    "loopback_up_blocking",
]

T = TypeVar("T")

logger = logging.getLogger("cni_async.netns")

_CLONE_NEWNET: Final = 0x40000000


_libc: Any = None


def _setns(fd: int) -> None:
    global _libc
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _socket_in(
    netns: str,
    family: int = socket.AF_NETLINK,
    kind: int = socket.SOCK_RAW,
    proto: int = socket.NETLINK_ROUTE,
) -> socket.socket:
    """A socket (rtnetlink unless told otherwise) that lives in ``netns``.

    The calling thread enters the namespace only for the ``socket()`` call and returns at once.
    """
    # Bare descriptors: file objects cost more than the setns() calls themselves. O_NONBLOCK:
    # a FIFO at the path must fail setns() at once, not block this thread until a writer comes.
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except ValueError as exc:  # a NUL byte in the path: an OSError like every other bad path
        raise OSError(errno.EINVAL, f"invalid namespace path: {exc}") from exc
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                # Inside the try: a signal handler that raises right after the switch (Python
                # runs them between two calls) must not leave this thread in the pod.
                _setns(target)
                return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
            finally:
                try:
                    _setns(home)
                except OSError:  # pragma: no cover - cannot happen short of a kernel bug
                    # Staying would run every later plugin inside a pod's namespace.
                    logger.critical("could not return to our own network namespace; aborting")
                    os.abort()
        finally:
            os.close(home)
    finally:
        os.close(target)


def _exchange(sock: socket.socket, work: Callable[[socket.socket], T]) -> T:
    with sock:
        # rtnetlink answers within the request's own system call (after taking the kernel's
        # global RTNL lock, which plugins hold while they build bridges and veths: hence a
        # worker thread); the timeout only guards against a kernel that never answers.
        sock.settimeout(_NETLINK_TIMEOUT)
        sock.bind((0, 0))
        return work(sock)


_NLMSG_HEADER: Final = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_NLMSG_ERROR_CODE: Final = struct.Struct("=i")
_IFINFOMSG: Final = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_NLM_F_REQUEST: Final = 0x1
_NLM_F_ACK: Final = 0x4
_NLM_F_DUMP: Final = 0x300
_RTM_NEWLINK: Final = 16


def _exchange_raw(sock: socket.socket, request: bytes, flags: int) -> list[bytes]:
    """Send one encoded request; return the raw replies up to the end of the answer.

    :raises OSError: the kernel answered with an error
    """
    sock.send(request)
    replies: list[bytes] = []
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if length < _NLMSG_HEADER.size:
                raise OSError(errno.EPROTO, "malformed netlink message")
            if kind == _NLMSG_ERROR:
                (code,) = _NLMSG_ERROR_CODE.unpack_from(data, offset + _NLMSG_HEADER.size)
                if code:
                    raise OSError(-code, os.strerror(-code))
                return replies
            if kind == _NLMSG_DONE:
                return replies
            replies.append(data[offset : offset + length])
            offset += (length + 3) & ~3
        if not flags & _NLM_F_DUMP:
            return replies


def _link_request(msg_type: int, flags: int, index: int, ifi_flags: int, change: int) -> bytes:
    """An attribute-less ``ifinfomsg`` request (the two requests ``lo`` needs)."""
    size = _NLMSG_HEADER.size + _IFINFOMSG.size
    return _NLMSG_HEADER.pack(size, msg_type, flags, 1, 0) + _IFINFOMSG.pack(
        0, 0, index, ifi_flags, change
    )


def _request(sock: socket.socket, msg: Any, msg_type: int, flags: int) -> list[Any]:
    """Send one request (a pyroute2 message); return the decoded replies.

    pyroute2's message classes encode and decode; the socket is a plain one, because
    pyroute2's socket classes each start an event loop of their own, which costs more than the
    whole exchange.

    :raises OSError: the kernel answered with an error
    """
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = 1
    msg.encode()
    replies = []
    for raw in _exchange_raw(sock, msg.data, flags):
        reply = type(msg)(raw)
        reply.decode()
        replies.append(reply)
    return replies


def _load_pyroute2() -> None:
    """Import the pyroute2 modules the worker threads use, here, in the calling thread.

    pyroute2 is imported only when an interface's addresses are first read; doing its first
    import from several worker threads at once trips over its circular imports.
    """
    import pyroute2.netlink.rtnl.ifaddrmsg
    import pyroute2.netlink.rtnl.ifinfmsg  # noqa: F401


def _namespace_error(netns: str, exc: Exception) -> NamespaceError:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EINVAL):
        return NamespaceError(
            f"network namespace {netns!r} does not exist or is not a network namespace",
            netns=netns,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        # The namespace may well be fine: this process could not open it.
        return NamespaceError(
            f"could not open network namespace {netns!r}: {exc.strerror}; this process is out "
            "of file descriptors or memory, so retry later or raise its limits",
            netns=netns,
            code=ERR_TRY_AGAIN_LATER,
        )
    # pyroute2's decoding errors are not OSErrors
    shown = str(exc) if isinstance(exc, OSError) else repr(exc)
    return NamespaceError(f"netlink in network namespace {netns!r} failed: {shown}", netns=netns)


async def _run_in_namespace(netns: str, work: Callable[[socket.socket], T]) -> T:
    """Run ``work`` on a netlink socket in ``netns``, in a worker thread."""
    try:
        sock = _socket_in(netns)
    except OSError as exc:
        raise _namespace_error(netns, exc) from exc
    try:
        return await anyio.to_thread.run_sync(_exchange_in, netns, sock, work)
    finally:
        sock.close()  # if cancelled before the worker thread took it over


def _exchange_in(netns: str, sock: socket.socket, work: Callable[[socket.socket], T]) -> T:
    try:
        return _exchange(sock, work)
    except Exception as exc:
        raise _namespace_error(netns, exc) from exc


_LOOPBACK_INDEX: Final = 1  # the kernel gives every namespace's lo index 1
_IFF_UP: Final = 1
_NETLINK_TIMEOUT: Final = 2.0
_RT_SCOPE_UNIVERSE: Final = 0


_SET_LO_UP: Final = _link_request(
    _RTM_NEWLINK, _NLM_F_REQUEST | _NLM_F_ACK, _LOOPBACK_INDEX, _IFF_UP, _IFF_UP
)


def _set_lo_up(sock: socket.socket) -> None:
    _exchange_raw(sock, _SET_LO_UP, _NLM_F_REQUEST | _NLM_F_ACK)


@contextmanager
def loopback_up_blocking(netns: str) -> Iterator[Callable[[], None]]:
    """A blocking function that brings ``lo`` up in ``netns``, for a worker thread that has
    other work to do too.

    The netlink socket is made on entering, in the calling thread (as with every call here, no
    worker thread enters the namespace); the function raises
    [`NamespaceError`][cni_async.NamespaceError] if the kernel refuses. Leaving the block closes the
    socket if the function did not run.

    :raises NamespaceError: if the namespace does not exist
    """
    try:
        sock = _socket_in(netns)
    except OSError as exc:
        raise _namespace_error(netns, exc) from exc
    try:
        yield functools.partial(_exchange_in, netns, sock, _set_lo_up)
    finally:
        sock.close()


class InterfaceState:
    """What netlink says about one interface: its flags, MAC and global addresses."""

    __slots__ = ("addresses", "mac", "up")

    def __init__(self, up: bool, mac: str, addresses: list[str]) -> None:
        self.up = up
        self.mac = mac
        self.addresses = addresses


def _read_interface(ifname: str) -> Callable[[Any], InterfaceState | None]:
    def work(sock: socket.socket) -> InterfaceState | None:
        from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETLINK
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        query = ifinfmsg()
        query["attrs"] = [("IFLA_IFNAME", ifname)]
        try:
            [link] = _request(sock, query, RTM_GETLINK, NLM_F_REQUEST)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        index = link["index"]
        addresses = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in _request(sock, ifaddrmsg(), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP)
            if a["index"] == index and a["scope"] == _RT_SCOPE_UNIVERSE
        ]
        return InterfaceState(
            bool(link["flags"] & _IFF_UP), link.get_attr("IFLA_ADDRESS") or "", addresses
        )

    return work


_SIOCGIFFLAGS: Final = 0x8913
_IFREQ_FLAGS: Final = struct.Struct("=16sh14x")  # struct ifreq: name, then ifr_flags


async def loopback_is_up(netns: str) -> bool:
    """Whether ``lo`` is up inside the namespace at ``netns``.

    :raises NamespaceError: if the namespace does not exist
    """
    # SIOCGIFFLAGS is answered under RCU alone, where rtnetlink's RTM_GETLINK takes the RTNL
    # lock that plugins hold while they build links: this cannot stall the event loop.
    await anyio.lowlevel.checkpoint()  # before the socket: a cancellation here leaves none
    try:
        sock = _socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM, 0)
    except OSError as exc:
        raise _namespace_error(netns, exc) from exc
    with sock:
        try:
            answer = fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ_FLAGS.pack(b"lo", 0))
        except OSError as exc:
            raise _namespace_error(netns, exc) from exc
    return bool(_IFREQ_FLAGS.unpack(answer)[1] & _IFF_UP)


async def interface_state(netns: str, ifname: str) -> InterfaceState | None:
    """The state of ``ifname`` inside the namespace at ``netns``; ``None`` if it is absent.

    :raises NamespaceError: if the namespace does not exist
    """
    _load_pyroute2()
    return await _run_in_namespace(netns, _read_interface(ifname))


_HOST_NAMESPACES: Final = (
    ("this process's own", "/proc/self/ns/net"),
    ("PID 1's (the host's)", "/proc/1/ns/net"),
)


@functools.cache
def _host_namespace_ids() -> tuple[tuple[str, tuple[int, int]], ...]:
    """The device and inode of each host namespace that can be read, once per process: the
    runtime does not move itself to another network namespace while it runs pods, and PID 1
    never does. A fork keeps both."""
    found = []
    for who, path in _HOST_NAMESPACES:
        try:
            ns = os.stat(path)
        except OSError:  # no /proc, or PID 1's out of reach (a container without the right)
            continue
        found.append((who, (ns.st_dev, ns.st_ino)))
    return tuple(found)


def host_namespace(netns: str) -> str | None:
    """Whose namespace ``netns`` is, when it is this process's own or PID 1's; else ``None``.

    A pod's namespace is neither: a plugin run there would configure the runtime's (or the
    host's) own network, and a DEL there could delete the host's interface of that name. The
    check compares the namespace files' device and inode, as ``ip netns identify`` does: one
    ``stat()`` of ``netns``, the two host namespaces' read once per process.
    """
    try:
        target = os.stat(netns)
    except (OSError, ValueError):  # missing, or a NUL byte: not a namespace we could enter
        return None
    for who, ns in _host_namespace_ids():
        if (target.st_dev, target.st_ino) == ns:
            return who
    return None
