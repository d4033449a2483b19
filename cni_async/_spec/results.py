"""CNI results of every spec version: typed models, parsing, encoding and version conversion.

Three wire schemas exist: 0.1.0/0.2.0 ([`Result020`][cni_async.libcni.Result020]), 0.3.0/0.3.1/0.4.0
([`Result040`][cni_async.libcni.Result040]) and 1.0.0/1.1.0 ([`Result100`][cni_async.libcni.Result100]). Parsing
follows libcni (``fixupResultVersion`` followed by a typed decode); conversion follows libcni's
``GetAsVersion`` matrix. Addresses are stored as their canonical text, validated when a model is
built, and integers stay exact (Go rounds them through float64 when it re-encodes a 1.x result).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from typing import Any, ClassVar, Final, TypeAlias

import msgspec

from .._errors import ProtocolError, VersionError
from .._json import decode_like_go
from .versions import CURRENT_VERSION

__all__ = [
    "DNS",
    "IPConfig",
    "IPConfig020",
    "IPConfig040",
    "Interface",
    "Interface040",
    "Result",
    "Result020",
    "Result040",
    "Result100",
    "Route",
    "convert_result",
    "encode_result",
    "parse_result",
    "result_from_builtins",
    "result_to_builtins",
]

_force_setattr = msgspec.structs.force_setattr


@functools.lru_cache(maxsize=4096)
def _canonical_ip(text: str) -> str | None:
    """Canonical text of an IP address, or ``None`` if Go's ``net.ParseIP`` would refuse it."""
    if "%" in text:  # Go refuses zones; Python's ipaddress accepts them
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@functools.lru_cache(maxsize=4096)
def _canonical_cidr(text: str) -> str | None:
    """Canonical ``address/prefix`` text (host bits kept), or ``None`` if Go would refuse it."""
    address_text, slash, prefix_text = text.partition("/")
    # Go accepts only decimal digits after the slash (leading zeros allowed, no netmask form).
    if not slash or not prefix_text.isascii() or not prefix_text.isdigit() or "%" in address_text:
        return None
    digits = prefix_text.lstrip("0") or "0"
    if len(digits) > 3:  # also keeps int() away from arbitrarily long digit strings
        return None
    prefix = int(digits)
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        return None
    if prefix > address.max_prefixlen:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # Go prints a mapped address in 4-byte form, with the last 32 bits of its 128-bit mask.
        return f"{address.ipv4_mapped}/{max(prefix - 96, 0)}"
    return f"{address}/{prefix}"


def _cidr_field(struct: msgspec.Struct, name: str, value: str) -> None:
    canonical = _canonical_cidr(value)
    if canonical is None:
        raise ValueError(f"invalid CIDR address: {value} (field `{name}`)")
    _force_setattr(struct, name, canonical)


def _ip_field(struct: msgspec.Struct, name: str, value: str | None) -> None:
    if value is None:
        return
    if value == "":
        _force_setattr(struct, name, None)
        return
    canonical = _canonical_ip(value)
    if canonical is None:
        raise ValueError(f"invalid IP address: {value} (field `{name}`)")
    _force_setattr(struct, name, canonical)


def _is_ipv6(cidr: str) -> bool:
    # Addresses are canonical, so IPv4 (including collapsed IPv4-mapped) never contains a colon.
    return ":" in cidr


class Route(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A route (all versions; 0.1.0/0.2.0 carry it inside ``ip4``/``ip6``).

    ``mtu``, ``advmss`` and ``priority`` are omitted from the JSON when 0; ``table`` and ``scope``
    only when ``None``.

    :ivar dst: destination, canonical CIDR text
    :ivar gw: gateway, canonical IP text, or ``None`` (``""`` on input means absent)
    :raises ValueError: on construction, if ``dst`` or ``gw`` is not a valid address
    """

    dst: str
    gw: str | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None

    def __post_init__(self) -> None:
        _cidr_field(self, "dst", self.dst)
        _ip_field(self, "gw", self.gw)


class DNS(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """DNS settings; every empty field is omitted from the JSON."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        """Whether all four fields are empty (a 1.x result then omits ``dns``)."""
        return not (self.nameservers or self.domain or self.search or self.options)


# omit_defaults never omits a value made by a default_factory other than an empty-container type,
# so ``default_factory=str`` / ``default_factory=DNS`` below mean "optional on input, always
# emitted" (Go's non-omitempty fields).
class _ResultBase(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    _versions: ClassVar[frozenset[str]]
    _implemented: ClassVar[str]

    cni_version: str = msgspec.field(name="cniVersion")

    def __post_init__(self) -> None:
        if self.cni_version and self.cni_version not in self._versions:
            raise ValueError(
                f"{type(self).__name__} cannot carry cniVersion {self.cni_version!r} "
                f"(one of {', '.join(sorted(self._versions))})"
            )


class IPConfig020(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The ``ip4``/``ip6`` object of a 0.1.0/0.2.0 result.

    :ivar ip: the address with its prefix length, canonical CIDR text
    :ivar gateway: canonical IP text, or ``None``
    :ivar routes: routes through this address family
    :raises ValueError: on construction, if ``ip`` or ``gateway`` is not a valid address
    """

    ip: str
    gateway: str | None = None
    routes: tuple[Route, ...] = ()

    def __post_init__(self) -> None:
        _cidr_field(self, "ip", self.ip)
        _ip_field(self, "gateway", self.gateway)


class Result020(_ResultBase, frozen=True, kw_only=True, omit_defaults=True):
    """A 0.1.0 or 0.2.0 result: at most one IPv4 and one IPv6 address; ``dns`` always emitted.

    :raises ValueError: on construction, if ``cni_version`` is not ``""``, 0.1.0 or 0.2.0
    """

    _versions = frozenset({"0.1.0", "0.2.0"})
    _implemented = "0.2.0"

    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    dns: DNS = msgspec.field(default_factory=DNS)


class Interface040(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An interface of a 0.3.x/0.4.0 result (``name`` is always emitted)."""

    name: str = msgspec.field(default_factory=str)
    mac: str = ""
    sandbox: str = ""


class IPConfig040(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An address of a 0.3.x/0.4.0 result.

    :ivar version: ``"4"`` or ``"6"`` as declared by the plugin (not validated, always emitted)
    :ivar interface: index into the result's ``interfaces`` (0 is meaningful), or ``None``
    :ivar address: canonical CIDR text
    :ivar gateway: canonical IP text, or ``None``
    :raises ValueError: on construction, if ``address`` or ``gateway`` is not a valid address
    """

    version: str = msgspec.field(default_factory=str)
    interface: int | None = None
    address: str
    gateway: str | None = None

    def __post_init__(self) -> None:
        _cidr_field(self, "address", self.address)
        _ip_field(self, "gateway", self.gateway)


class Result040(_ResultBase, frozen=True, kw_only=True, omit_defaults=True):
    """A 0.3.0, 0.3.1 or 0.4.0 result; ``dns`` always emitted.

    :raises ValueError: on construction, if ``cni_version`` is not ``""`` or a 0.3/0.4 version
    """

    _versions = frozenset({"0.3.0", "0.3.1", "0.4.0"})
    _implemented = "0.4.0"

    interfaces: tuple[Interface040, ...] = ()
    ips: tuple[IPConfig040, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = msgspec.field(default_factory=DNS)


class Interface(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An interface of a 1.0.0/1.1.0 result (``name`` always emitted, ``mtu`` omitted when 0)."""

    name: str = msgspec.field(default_factory=str)
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = msgspec.field(default="", name="socketPath")
    pci_id: str = msgspec.field(default="", name="pciID")


class IPConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An address of a 1.0.0/1.1.0 result.

    :ivar interface: index into the result's ``interfaces`` (0 is meaningful), or ``None``
    :ivar address: canonical CIDR text
    :ivar gateway: canonical IP text, or ``None``
    :raises ValueError: on construction, if ``address`` or ``gateway`` is not a valid address
    """

    interface: int | None = None
    address: str
    gateway: str | None = None

    def __post_init__(self) -> None:
        _cidr_field(self, "address", self.address)
        _ip_field(self, "gateway", self.gateway)


class Result100(_ResultBase, frozen=True, kw_only=True, omit_defaults=True):
    """A 1.0.0 or 1.1.0 result (the two share one schema); an empty ``dns`` is omitted.

    :raises ValueError: on construction, if ``cni_version`` is not ``""``, 1.0.0 or 1.1.0
    """

    _versions = frozenset({"1.0.0", "1.1.0"})
    _implemented = CURRENT_VERSION

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = msgspec.field(default_factory=DNS)


Result: TypeAlias = Result020 | Result040 | Result100
"""A parsed CNI result of any version."""

_RESULT_TYPES: Final[dict[str, type[Result020 | Result040 | Result100]]] = {
    version: cls for cls in (Result020, Result040, Result100) for version in cls._versions
}

_json_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()
_sorted_encoder: Final = msgspec.json.Encoder(order="sorted")

# Where Go's decoder reads JSON null as "leave unset"; msgspec would reject it for str/int fields.
_NULLABLE_OBJECTS: Final = frozenset({"ip4", "ip6", "dns"})
_NULLABLE_ITEMS: Final = frozenset({"interfaces", "ips", "routes"})


def _drop_nulls(obj: dict[Any, Any], *, top: bool) -> dict[Any, Any]:
    cleaned: dict[Any, Any] = {}
    for key, value in obj.items():
        if value is None:
            continue
        if key in _NULLABLE_ITEMS and isinstance(value, list):
            value = [
                {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
                for item in value
            ]
        elif top and key in _NULLABLE_OBJECTS and isinstance(value, dict):
            value = _drop_nulls(value, top=False)
        cleaned[key] = value
    return cleaned


def _typed_result(obj: Any, config_version: str) -> Result:
    if obj is None:  # stdout "null" (libcni >= 1.2 reads it as {})
        obj = {}
    elif not isinstance(obj, dict):
        raise ProtocolError(
            f"failed to unmarshal raw result: expected a JSON object, got {type(obj).__name__}"
        )
    version = obj.get("cniVersion")
    if not isinstance(version, str) or not version:
        version = config_version or "0.1.0"
    cls = _RESULT_TYPES.get(version)
    if cls is None:
        raise VersionError(f"unsupported CNI result version {json.dumps(version)}")
    fixed = _drop_nulls(obj, top=True)
    fixed["cniVersion"] = version
    try:
        result: Result = msgspec.convert(fixed, cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"malformed CNI {version} result: {exc}") from exc
    return result


def parse_result(data: bytes, config_version: str) -> Result:
    """Parse a plugin's stdout into a typed result, as libcni does after a successful ADD.

    The result's own ``cniVersion`` decides its type when it is a non-empty string; otherwise the
    configuration's version is used (``""`` meaning 0.1.0). The result is not converted. Unknown
    keys are ignored, JSON ``null`` counts as absent, addresses are canonicalised.

    :param data: the plugin's stdout
    :param config_version: the ``cniVersion`` the plugin was invoked with
    :return: a [`Result020`][cni_async.libcni.Result020], [`Result040`][cni_async.libcni.Result040] or
        [`Result100`][cni_async.libcni.Result100]
    :raises ProtocolError: if ``data`` is not a JSON object (or ``null``) or a field is malformed
    :raises VersionError: if the result's version is not one this library can read
    """
    try:
        obj = decode_like_go(_json_decoder, data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"failed to unmarshal raw result: {exc}") from exc
    return _typed_result(obj, config_version)


def result_from_builtins(obj: Any, config_version: str) -> Result:
    """Build a typed result from already-decoded JSON (a cache entry's ``result``, say).

    Same rules as [`parse_result`][cni_async.libcni.parse_result]; ``obj`` is not modified.

    :param obj: a ``dict`` (or ``None``, read as ``{}``) of JSON values
    :param config_version: the version to assume when ``obj`` has no usable ``cniVersion``
    :raises ProtocolError: if ``obj`` is not a ``dict`` or ``None``, or a field is malformed
    :raises VersionError: if the result's version is not one this library can read
    """
    return _typed_result(obj, config_version)


def encode_result(result: Result) -> bytes:
    """The result as compact JSON bytes.

    0.x results keep their schema's key order and always carry ``dns`` (``{}`` when empty);
    1.x results omit an empty ``dns`` and come out key-sorted at every level, as libcni's
    re-encoding through a generic map produces them.
    """
    if isinstance(result, Result100):
        obj = msgspec.to_builtins(result)
        if result.dns.is_empty():
            del obj["dns"]
        return _sorted_encoder.encode(obj)
    return _encoder.encode(result)


def result_to_builtins(result: Result) -> dict[str, Any]:
    """The JSON object form of a result (what is injected as ``prevResult`` and cached).

    Plain ``dict``/``list``/``str``/``int`` values, exactly what decoding ``encode_result()``'s
    output gives.
    """
    obj: dict[str, Any] = _json_decoder.decode(encode_result(result))
    return obj


def _from_020(result: Result020) -> Result040:
    ips: list[IPConfig040] = []
    routes: list[Route] = []
    for version, config in (("4", result.ip4), ("6", result.ip6)):
        if config is not None:
            ips.append(IPConfig040(version=version, address=config.ip, gateway=config.gateway))
            routes.extend(config.routes)
    return Result040(cni_version="0.4.0", ips=tuple(ips), routes=tuple(routes), dns=result.dns)


def _to_020(result: Result040) -> Result020:
    # 0.2.0 holds one address per family: the first one *declared* as "4" or "6" wins.
    first4 = next((ip for ip in result.ips if ip.version == "4"), None)
    first6 = next((ip for ip in result.ips if ip.version == "6"), None)
    if first4 is None and first6 is None:
        raise VersionError("cannot convert: no valid IP addresses")
    ip4 = ip6 = None
    if first4 is not None:
        routes = tuple(Route(dst=r.dst, gw=r.gw) for r in result.routes if not _is_ipv6(r.dst))
        ip4 = IPConfig020(ip=first4.address, gateway=first4.gateway, routes=routes)
    if first6 is not None:
        routes = tuple(Route(dst=r.dst, gw=r.gw) for r in result.routes if _is_ipv6(r.dst))
        ip6 = IPConfig020(ip=first6.address, gateway=first6.gateway, routes=routes)
    return Result020(cni_version="0.2.0", ip4=ip4, ip6=ip6, dns=result.dns)


def _to_100(result: Result040) -> Result100:
    return Result100(
        cni_version=CURRENT_VERSION,
        interfaces=tuple(
            Interface(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in result.interfaces
        ),
        ips=tuple(
            IPConfig(interface=ip.interface, address=ip.address, gateway=ip.gateway)
            for ip in result.ips
        ),
        routes=result.routes,
        dns=result.dns,
    )


def _from_100(result: Result100) -> Result040:
    return Result040(
        cni_version="0.4.0",
        interfaces=tuple(
            Interface040(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in result.interfaces
        ),
        ips=tuple(
            IPConfig040(
                version="6" if _is_ipv6(ip.address) else "4",
                interface=ip.interface,
                address=ip.address,
                gateway=ip.gateway,
            )
            for ip in result.ips
        ),
        routes=result.routes,
        dns=result.dns,
    )


def convert_result(result: Result, version: str) -> Result:
    """Convert a result to another CNI version (libcni's ``GetAsVersion``).

    Conversions go one schema at a time (0.2 ↔ 0.4 ↔ 1.x); within a schema only ``cniVersion``
    changes. Down-conversion drops what the older schema cannot carry: 1.x → 0.4 loses the
    interfaces' ``mtu``, ``socketPath`` and ``pciID``; 0.4 → 0.2 keeps the first address declared
    as each family, puts each route under the address of its family (only ``dst`` and ``gw``) and
    drops interfaces. A result whose ``cni_version`` is empty counts as its type's newest version.

    :param result: the result to convert
    :param version: the target version (``""`` meaning 0.1.0)
    :return: ``result`` itself if it already has that version, otherwise a new result
    :raises VersionError: if there is no converter to ``version``, or if converting to 0.1.0/0.2.0
        finds no address declared as version 4 or 6
    """
    target = version or "0.1.0"
    source = result.cni_version or result._implemented
    if source == target:
        return result if result.cni_version else msgspec.structs.replace(result, cni_version=source)
    target_type = _RESULT_TYPES.get(target)
    if target_type is None:
        raise VersionError(f"no converter for CNI result version {source} to {target}")
    converted: Result = result
    while not isinstance(converted, target_type):
        if isinstance(converted, Result020):
            converted = _from_020(converted)
        elif isinstance(converted, Result100):
            converted = _from_100(converted)
        elif target_type is Result020:
            converted = _to_020(converted)
        else:
            converted = _to_100(converted)
    return msgspec.structs.replace(converted, cni_version=target)
