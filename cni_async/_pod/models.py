"""The pod-level types of the public API (ocicni's ``PodNetwork`` and friends).

All are frozen ``msgspec.Struct``s whose JSON form uses the CNI conventions' names (``hostPort``,
``containerPort``, ``hostIP``, ``rangeStart``, ``ingressRate``, ...), so capability arguments are
encoded straight from them.

**Checked at construction.** Each type checks its fields in ``__post_init__`` (which msgspec also
runs when decoding one): a field of the wrong type raises ``TypeError`` and an impossible value
(a port out of range, an empty container ID or network name, a negative rate, a subnet that is
not a CIDR)
raises ``ValueError``, each naming the field, e.g. ``PodNetwork.networks[0] must be
NetAttachment, not str``. These are programming errors, raised where the value is made, like the
``ValueError`` of any other constructor.

What CNI itself constrains is checked where it is sent, as before: the characters of a container
ID, a network name or an interface name, and the syntax of a static IP or MAC raise
[`InvalidArgument`][cni_async.InvalidArgument] (with its CNI error code) from the pod operation,
before any plugin runs. An operation refused that way is seen by observers and metrics, and a
teardown that finds its attachments in the cache is not refused for a static IP or MAC it does
not send.

**Hashable.** Sequences given as lists are stored as tuples, and mappings as read-only dicts
(``FrozenDict``), so every model can be hashed and used as a dict key or set member; equal models
hash equal. A ``FrozenDict`` is a ``dict``: it compares equal to a ``dict`` with the same items and
encodes as a JSON object, so equality and the JSON form are what they were with lists and dicts.
"""

# No ``from __future__ import annotations`` here: msgspec resolves string annotations in the
# namespace of the class's ``__module__``, which the package sets to ``cni_async``, where
# ``Sequence`` and ``Mapping`` are not defined; real annotations keep decoding working.
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import msgspec

from .._spec.results import Result, Result020, Result040, Result100
from .._spec.validation import (
    check_int,
    check_nonempty_str,
    check_str,
    go_cidr,
    go_ip,
    type_error,
)

__all__ = [
    "BandwidthConfig",
    "FrozenDict",
    "IpRange",
    "NetAttachment",
    "NetResult",
    "PodNetwork",
    "PortMapping",
    "RuntimeConfig",
]

_force_setattr = msgspec.structs.force_setattr
_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")

_PORT_MAX = 65535
_UINT64_MAX = 2**64 - 1  # the bandwidth plugin's rates and bursts are Go uint64s
_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})


def _read_only() -> NoReturn:
    raise TypeError("FrozenDict is read-only")


class FrozenDict(dict[_K, _V]):
    """A read-only, hashable ``dict``: how the models store the mappings they are given.

    Being a ``dict``, it compares equal to a ``dict`` with the same items, and msgspec encodes it
    as an object; every method that would change it raises ``TypeError``. Its hash is that of the
    frozenset of its items, so its values must be hashable.
    """

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy rebuild it without __setitem__
        return (type(self), (dict(self),))

    def __setitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def __delitem__(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def __ior__(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[misc]
        _read_only()

    def clear(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def pop(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def popitem(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def setdefault(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only()


_EMPTY: FrozenDict[Any, Any] = FrozenDict()


def _empty() -> FrozenDict[Any, Any]:
    return _EMPTY


# The helpers below take the owner and field separately and build a message only on failure:
# they run for every pod, so the common case is a few type() tests and no string formatting.


def _as_tuple(owner: str, field: str, value: object, expected: str) -> tuple[Any, ...]:
    """``value`` (any sequence but text) as a tuple (itself if it is one)."""
    if type(value) is tuple:
        return value
    if type(value) is list or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
    ):
        return tuple(value)
    raise type_error(f"{owner}.{field}", expected, value)


def _tuple_of(owner: str, field: str, value: object, item_type: type[_T]) -> tuple[_T, ...]:
    """``value`` (any sequence but text) as a tuple of ``item_type`` (itself if it is one)."""
    items = _as_tuple(owner, field, value, f"a sequence of {item_type.__name__}")
    for item in items:
        if not isinstance(item, item_type):
            index = next(i for i, x in enumerate(items) if not isinstance(x, item_type))
            raise type_error(f"{owner}.{field}[{index}]", item_type.__name__, item)
    return items


def _str_keyed(owner: str, field: str, value: object) -> Mapping[Any, Any]:
    """``value`` if it is a mapping with ``str`` keys."""
    if type(value) is not FrozenDict and type(value) is not dict and not isinstance(value, Mapping):
        raise type_error(f"{owner}.{field}", "a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{owner}.{field} keys must be str, not {type(key).__name__}")
    return value


def _frozen_of(owner: str, field: str, value: object, item_type: type[_V]) -> FrozenDict[str, _V]:
    """``value`` as a FrozenDict (itself if it is one) of ``str`` keys and ``item_type`` values."""
    mapping = _str_keyed(owner, field, value)
    if not mapping:
        return _EMPTY
    for key, item in mapping.items():
        if not isinstance(item, item_type):
            raise type_error(f"{owner}.{field}[{key!r}]", item_type.__name__, item)
    return mapping if type(mapping) is FrozenDict else FrozenDict(mapping)


class PortMapping(msgspec.Struct, frozen=True, rename="camel"):
    """A host port mapped to a port of the pod (the ``portMappings`` capability).

    Checked at construction: both ports are ``int`` values, ``container_port`` in 1..65535 and
    ``host_port`` in 0..65535, where 0 is CRI's "no host port": such a mapping is accepted and,
    as cri-o and containerd do, never sent to the plugins (portmap refuses port 0). ``protocol`` is
    ``"tcp"``, ``"udp"`` or ``"sctp"`` in any case, and ``host_ip`` is ``""`` or an IP address that
    Go accepts (no zone). A wrong type raises ``TypeError``, a value out of range ``ValueError``.

    :ivar host_port: the port on the host
    :ivar container_port: the port inside the pod
    :ivar protocol: ``"tcp"``, ``"udp"`` or ``"sctp"``
    :ivar host_ip: the host address to bind, or ``""`` for all
    :raises TypeError: a field is not an ``int`` or ``str`` as declared
    :raises ValueError: a port out of range, an unknown protocol or a malformed ``host_ip``
    """

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = msgspec.field(default="", name="hostIP")

    def __post_init__(self) -> None:
        check_int("PortMapping", "host_port", self.host_port, 0, _PORT_MAX)
        check_int("PortMapping", "container_port", self.container_port, 1, _PORT_MAX)
        check_str("PortMapping", "protocol", self.protocol)
        if self.protocol.lower() not in _PROTOCOLS:
            raise ValueError(
                f"PortMapping.protocol must be 'tcp', 'udp' or 'sctp', got {self.protocol!r}"
            )
        check_str("PortMapping", "host_ip", self.host_ip)
        if self.host_ip and go_ip(self.host_ip) is None:
            raise ValueError(
                f"PortMapping.host_ip must be an IP address or '', got {self.host_ip!r}"
            )


class IpRange(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """An address range for IPAM (an element of the ``ipRanges`` capability).

    Checked at construction: every field is a ``str``; ``subnet`` is a CIDR
    (``address/prefix``, host bits allowed) that Go accepts; ``range_start``, ``range_end`` and
    ``gateway`` are each ``""`` or an address of the subnet's family; ``range_start`` and
    ``range_end`` lie in the subnet, the start not after the end. The text is kept as given.

    :ivar subnet: the whole CIDR
    :ivar range_start: the first address to allocate, or ``""``
    :ivar range_end: the last address to allocate, or ``""``
    :ivar gateway: the gateway of the subnet, or ``""``
    :raises TypeError: a field is not a ``str``
    :raises ValueError: ``subnet`` is not a CIDR, or an address is malformed, of the other family,
        outside the subnet, or the range is reversed
    """

    subnet: str
    range_start: str = ""
    range_end: str = ""
    gateway: str = ""

    def __post_init__(self) -> None:
        check_nonempty_str("IpRange", "subnet", self.subnet)
        network = go_cidr(self.subnet)
        if network is None:
            raise ValueError(f"IpRange.subnet must be a CIDR (address/prefix), got {self.subnet!r}")
        bounds = []
        for field, text, inside in (
            ("range_start", self.range_start, True),
            ("range_end", self.range_end, True),
            ("gateway", self.gateway, False),
        ):
            check_str("IpRange", field, text)
            if not text:
                continue
            address = go_ip(text)
            if address is None:
                raise ValueError(f"IpRange.{field} must be an IP address or '', got {text!r}")
            if address.version != network.version:
                raise ValueError(
                    f"IpRange.{field} {text!r} is not an IPv{network.version} address like the "
                    f"subnet {self.subnet!r}"
                )
            if inside:
                if address not in network:
                    raise ValueError(f"IpRange.{field} {text!r} is not in subnet {self.subnet!r}")
                bounds.append(address)
        if self.range_start and self.range_end and int(bounds[0]) > int(bounds[1]):
            raise ValueError(
                f"IpRange.range_start {self.range_start!r} is after range_end {self.range_end!r}"
            )


class BandwidthConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Traffic shaping for the pod (the ``bandwidth`` capability); rates in bits per second.

    A zero value is left out, meaning no limit in that direction.

    Checked at construction: every field is an ``int`` (not ``bool``) in 0..2**64-1 (the
    bandwidth plugin's ``uint64``).

    :raises TypeError: a field is not an ``int``
    :raises ValueError: a field is negative or above 2**64-1
    """

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def __post_init__(self) -> None:
        for field in ("ingress_rate", "ingress_burst", "egress_rate", "egress_burst"):
            check_int("BandwidthConfig", field, getattr(self, field), 0, _UINT64_MAX, "2**64-1")


class RuntimeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Pod-specific settings for one network.

    Checked at construction: the types of every field, and that no range set in ``ip_ranges``
    is empty. Sequences may be given as lists and are stored as tuples; ``pod_annotations`` is
    stored as a read-only ``FrozenDict`` (a ``dict``). The syntax of ``ip`` and ``mac`` is
    checked when they are sent (the pod operation raises
    [`InvalidArgument`][cni_async.InvalidArgument]), not here, so a teardown that takes its
    arguments from the cache is never refused for them.

    :ivar ip: a static IP, sent as ``IP=`` in CNI_ARGS (host-local honours it)
    :ivar mac: a static MAC, sent as ``MAC=`` in CNI_ARGS
    :ivar port_mappings: sent as the ``portMappings`` capability
    :ivar bandwidth: sent as the ``bandwidth`` capability
    :ivar ip_ranges: sent as the ``ipRanges`` capability (a sequence of range sets)
    :ivar cgroup_path: sent as the ``cgroupPath`` capability
    :ivar pod_annotations: sent as the ``io.kubernetes.cri.pod-annotations`` capability; never
        logged
    :raises TypeError: a field, or an element of one, is not of its declared type
    :raises ValueError: a range set of ``ip_ranges`` is empty
    """

    ip: str = ""
    mac: str = ""
    port_mappings: Sequence[PortMapping] = ()
    bandwidth: BandwidthConfig | None = None
    ip_ranges: Sequence[Sequence[IpRange]] = ()
    cgroup_path: str = ""
    pod_annotations: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        owner = "RuntimeConfig"
        if type(self.ip) is not str or type(self.mac) is not str:
            check_str(owner, "ip", self.ip)
            check_str(owner, "mac", self.mac)
        if type(self.cgroup_path) is not str:
            check_str(owner, "cgroup_path", self.cgroup_path)
        port_mappings = _tuple_of(owner, "port_mappings", self.port_mappings, PortMapping)
        if port_mappings is not self.port_mappings:
            _force_setattr(self, "port_mappings", port_mappings)
        if self.bandwidth is not None and not isinstance(self.bandwidth, BandwidthConfig):
            raise type_error(f"{owner}.bandwidth", "BandwidthConfig or None", self.bandwidth)
        ip_ranges = self.ip_ranges
        if type(ip_ranges) is not tuple or ip_ranges:
            sets = _as_tuple(owner, "ip_ranges", ip_ranges, "a sequence of sequences of IpRange")
            frozen_sets = tuple(
                _tuple_of(owner, f"ip_ranges[{index}]", range_set, IpRange)
                for index, range_set in enumerate(sets)
            )
            for index, range_set in enumerate(frozen_sets):
                if not range_set:
                    raise ValueError(f"{owner}.ip_ranges[{index}] must not be empty (a range set)")
            _force_setattr(self, "ip_ranges", frozen_sets)
        if self.pod_annotations is not None:
            annotations = _frozen_of(owner, "pod_annotations", self.pod_annotations, str)
            if annotations is not self.pod_annotations:
                _force_setattr(self, "pod_annotations", annotations)


class NetAttachment(msgspec.Struct, frozen=True):
    """A network to attach a pod to, and optionally the interface name to use.

    Checked at construction: both fields are ``str`` and ``name`` is not empty. The characters
    of ``name`` and ``ifname`` are checked by the pod operation, which raises
    [`InvalidArgument`][cni_async.InvalidArgument] for a bad or duplicate interface name.

    :ivar name: the network (configuration list) name
    :ivar ifname: the interface name inside the pod, or ``""`` for the lowest free ``ethN``
    :raises TypeError: a field is not a ``str``
    :raises ValueError: ``name`` is empty
    """

    name: str
    ifname: str = ""

    def __post_init__(self) -> None:
        if type(self.name) is not str or not self.name or type(self.ifname) is not str:
            check_nonempty_str("NetAttachment", "name", self.name)
            check_str("NetAttachment", "ifname", self.ifname)


class PodNetwork(msgspec.Struct, frozen=True):
    """A pod sandbox and the networks it should be on.

    Checked at construction: the five names are ``str`` and ``id`` is not empty; ``networks``
    is a sequence of [`NetAttachment`][cni_async.NetAttachment] (stored as a tuple);
    ``runtime_config`` maps ``str`` to [`RuntimeConfig`][cni_async.RuntimeConfig] and ``aliases``
    maps ``str`` to sequences of ``str`` (stored as read-only
    ``FrozenDict`` mappings, the aliases as tuples). The characters of
    ``id`` and of the interface names are checked by each pod operation, which raises
    [`InvalidArgument`][cni_async.InvalidArgument] (code 4) before any plugin runs.

    :ivar name: the pod's name
    :ivar namespace: the pod's namespace
    :ivar id: the sandbox container ID (``CNI_CONTAINERID``)
    :ivar uid: the pod's UID
    :ivar netns: the path of the sandbox's network namespace
    :ivar networks: the networks to attach, in order; empty means the default network
    :ivar runtime_config: per-network settings, keyed by network name
    :ivar aliases: per-network name aliases, keyed by network name; each network is sent only
        its own (as ``{"<network>": [...]}`` in the ``aliases`` capability)
    :raises TypeError: a field, or an element, key or value of one, is not of its declared type,
        e.g. ``PodNetwork.networks[0] must be NetAttachment, not str``
    :raises ValueError: ``id`` is empty
    """

    name: str
    namespace: str
    id: str
    uid: str
    netns: str
    networks: Sequence[NetAttachment] = ()
    runtime_config: Mapping[str, RuntimeConfig] = msgspec.field(default_factory=_empty)
    aliases: Mapping[str, Sequence[str]] = msgspec.field(default_factory=_empty)

    def __post_init__(self) -> None:
        owner = "PodNetwork"
        if not (
            type(self.name) is str
            and type(self.namespace) is str
            and type(self.uid) is str
            and type(self.netns) is str
        ):  # str subclasses take this way too, and pass
            for field in ("name", "namespace", "uid", "netns"):
                check_str(owner, field, getattr(self, field))
        if type(self.id) is not str or not self.id:
            check_nonempty_str(owner, "id", self.id)
        networks = _tuple_of(owner, "networks", self.networks, NetAttachment)
        if networks is not self.networks:
            _force_setattr(self, "networks", networks)
        runtime_config = _frozen_of(owner, "runtime_config", self.runtime_config, RuntimeConfig)
        if runtime_config is not self.runtime_config:
            _force_setattr(self, "runtime_config", runtime_config)
        aliases = _str_keyed(owner, "aliases", self.aliases)
        if aliases:
            frozen = FrozenDict(
                {
                    key: _tuple_of(owner, f"aliases[{key!r}]", names, str)
                    for key, names in aliases.items()
                }
            )
            _force_setattr(self, "aliases", frozen)
        elif aliases is not _EMPTY:
            _force_setattr(self, "aliases", _EMPTY)


class NetResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one network of a pod.

    Checked at construction: the types of the four fields.

    :ivar name: the network name
    :ivar ifname: the interface name inside the pod
    :ivar result: the result as a current (1.1.0) result, whatever version the plugin printed,
        so ``result.ips[0].address`` works for every network
    :ivar config_result: the same result in the network configuration's own ``cniVersion``
        (what ocicni returns)
    :raises TypeError: a field is not of its declared type
    """

    name: str
    ifname: str
    result: Result100
    config_result: Result

    def __post_init__(self) -> None:
        check_str("NetResult", "name", self.name)
        check_str("NetResult", "ifname", self.ifname)
        if not isinstance(self.result, Result100):
            raise type_error("NetResult.result", "Result100", self.result)
        if not isinstance(self.config_result, Result020 | Result040 | Result100):
            raise type_error(
                "NetResult.config_result", "Result020, Result040 or Result100", self.config_result
            )


def capability_args(network: str, pod: PodNetwork) -> dict[str, Any]:
    """The capability arguments ocicni sends for ``network`` of ``pod``.

    Only what is set is sent; each plugin then receives the subset it declares. Sequences come
    out as lists and mappings as plain dicts, whatever the models store.
    """
    rc = pod.runtime_config.get(network)
    args: dict[str, Any] = {}
    if rc is not None:
        mapped = [m for m in rc.port_mappings if m.host_port]
        if mapped:
            args["portMappings"] = msgspec.to_builtins(mapped)
        if rc.bandwidth is not None:
            args["bandwidth"] = msgspec.to_builtins(rc.bandwidth)
        if rc.ip_ranges:
            args["ipRanges"] = msgspec.to_builtins([list(s) for s in rc.ip_ranges])
        if rc.cgroup_path:
            args["cgroupPath"] = rc.cgroup_path
        if rc.pod_annotations is not None:
            args["io.kubernetes.cri.pod-annotations"] = dict(rc.pod_annotations)
    aliases = pod.aliases.get(network)
    if aliases:
        args["aliases"] = {network: list(aliases)}
    return args
