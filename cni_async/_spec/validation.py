"""Validation of the names that reach plugins and cache paths, and of the public models' fields.

libcni checks container IDs, network names and interface names on ADD only; we check them on
every verb and before any cache path is built, so no input can address a file outside the cache
directory. Those checks raise [`InvalidArgument`][cni_async.InvalidArgument] with a CNI error code.

The ``check_*`` helpers below are what the public models (``PodNetwork`` and friends) run at
construction: a wrong type raises ``TypeError`` and an impossible value ``ValueError``, both naming
the field (``PodNetwork.networks[0] must be NetAttachment, not str``). They are plain ``isinstance``
and range tests, cheap enough for models built for every pod.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from .._errors import (
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    ERR_INVALID_NETWORK_CONFIG,
    ERR_UNKNOWN_CONTAINER,
    InvalidArgument,
)

_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
# Go's unicode.IsSpace: ASCII whitespace plus U+0085, U+00A0 and Unicode White_Space.
_SPACE: Final = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_IFNAME_MAX: Final = 15
_ARG_KEY: Final = re.compile(r"[A-Za-z0-9_.\-]+")
# Any mapping is encoded as the stdin encoder does (the encodability of the text is what counts).
_encoder: Final = msgspec.json.Encoder(enc_hook=lambda obj: dict(obj))


def validate_container_id(container_id: str) -> None:
    """:raises InvalidArgument: (code 3 or 4) unless the ID is a valid CNI container ID."""
    if not container_id:
        raise InvalidArgument("missing containerID", code=ERR_UNKNOWN_CONTAINER)
    if not _NAME.fullmatch(container_id):
        raise InvalidArgument(
            f"invalid characters in containerID {container_id!r}: use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit",
            code=ERR_INVALID_ENVIRONMENT_VARIABLES,
        )


def validate_network_name(name: str) -> None:
    """:raises InvalidArgument: (code 7) unless ``name`` is a valid CNI network name."""
    if not name:
        raise InvalidArgument("missing network name", code=ERR_INVALID_NETWORK_CONFIG)
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid characters found in network name {name!r}: use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit",
            code=ERR_INVALID_NETWORK_CONFIG,
        )


@functools.lru_cache(maxsize=64)  # a few names, checked char by char on every verb
def validate_ifname(ifname: str) -> None:
    """:raises InvalidArgument: (code 4) unless ``ifname`` is a valid Linux interface name."""
    code = ERR_INVALID_ENVIRONMENT_VARIABLES
    if not ifname:
        raise InvalidArgument("interface name is empty", code=code)
    try:
        encoded = ifname.encode()
    except UnicodeEncodeError:  # a lone surrogate: no byte string names it
        raise InvalidArgument(f"interface name {ifname!r} is not valid text", code=code) from None
    if len(encoded) > _IFNAME_MAX:
        raise InvalidArgument(
            f"interface name {ifname!r} is too long: it must be at most {_IFNAME_MAX} bytes",
            code=code,
        )
    if ifname in (".", ".."):
        raise InvalidArgument("interface name is . or ..", code=code)
    if any(c in "/:" or c in _SPACE or not c.isprintable() for c in ifname):
        raise InvalidArgument(
            f"interface name {ifname!r} contains '/', ':', whitespace or control characters",
            code=code,
        )


def validate_attachment(container_id: str, network: str, ifname: str) -> None:
    """Validate the three names that identify an attachment (and its cache entry)."""
    validate_container_id(container_id)
    validate_network_name(network)
    validate_ifname(ifname)


def validate_cni_args(args: Iterable[tuple[str, str]]) -> None:
    """:raises InvalidArgument: if a CNI_ARGS pair could not be sent unambiguously.

    CNI_ARGS is ``K=V;K=V`` with no escaping, so keys must be plain names and values must not
    contain ``;`` or ``=`` (plugins split each pair on ``=`` and refuse a third part, as
    libcni's ``LoadArgs`` does), nor NUL, which cannot be in an environment variable.
    """
    for key, value in args:
        if not _ARG_KEY.fullmatch(key):
            raise InvalidArgument(
                f"invalid CNI_ARGS key {key!r}: use letters, digits, '_', '.' and '-'",
                code=ERR_INVALID_ENVIRONMENT_VARIABLES,
            )
        if ";" in value or "=" in value or "\0" in value:
            raise InvalidArgument(
                f"invalid CNI_ARGS value for {key}: it must not contain ';', '=' or NUL",
                code=ERR_INVALID_ENVIRONMENT_VARIABLES,
            )
        if not value.isascii() and not _is_utf8(value):
            raise InvalidArgument(
                f"invalid CNI_ARGS value for {key}: {_NOT_UTF8}",
                code=ERR_INVALID_ENVIRONMENT_VARIABLES,
            )


_NOT_UTF8: Final = "it is not valid text (a lone surrogate, as from undecodable bytes)"


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate_netns(netns: str) -> None:
    """:raises InvalidArgument: if ``netns`` could not be sent as ``CNI_NETNS`` (a NUL byte, or
    text that is not valid UTF-8)."""
    if "\0" in netns or not (netns.isascii() or _is_utf8(netns)):
        raise InvalidArgument(
            f"invalid network namespace path {netns!r}: it must be UTF-8 text without NUL",
            code=ERR_INVALID_ENVIRONMENT_VARIABLES,
        )


def validate_capability_args(capability_args: Mapping[str, Any]) -> None:
    """:raises InvalidArgument: if a capability argument (annotations, aliases, ...) holds
    text that could not be sent to a plugin as JSON."""
    if not capability_args:
        return
    try:
        _encoder.encode(capability_args)
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            f"invalid capability arguments: {_NOT_UTF8}", code=ERR_INVALID_NETWORK_CONFIG
        ) from exc


# -- the public models' fields (TypeError / ValueError at construction) ---------------------------


def type_error(where: str, expected: str, value: object) -> TypeError:
    """``TypeError: <where> must be <expected>, not <type of value>``."""
    return TypeError(f"{where} must be {expected}, not {type(value).__name__}")


def check_str(owner: str, field: str, value: object) -> None:
    """:raises TypeError: unless ``value`` is a ``str``."""
    if not isinstance(value, str):
        raise type_error(f"{owner}.{field}", "str", value)


def check_nonempty_str(owner: str, field: str, value: object) -> None:
    """:raises TypeError: unless ``value`` is a ``str``; :raises ValueError: if it is empty."""
    if not isinstance(value, str):
        raise type_error(f"{owner}.{field}", "str", value)
    if not value:
        raise ValueError(f"{owner}.{field} must not be empty")


def check_int(
    owner: str, field: str, value: object, low: int, high: int, high_text: str = ""
) -> None:
    """:raises TypeError: unless ``value`` is an ``int`` (``bool`` is refused);
    :raises ValueError: unless ``low <= value <= high`` (``high_text`` names ``high`` in the
        message)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise type_error(f"{owner}.{field}", "int", value)
    if not low <= value <= high:
        raise ValueError(f"{owner}.{field} must be {low}..{high_text or high}, got {value}")


def check_number(owner: str, field: str, value: object, low: float, high: float = math.inf) -> None:
    """:raises TypeError: unless ``value`` is an ``int`` or ``float`` (``bool`` is refused);
    :raises ValueError: unless it is finite and ``low <= value <= high``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise type_error(f"{owner}.{field}", "a number", value)
    if not (math.isfinite(value) and low <= value <= high):
        bounds = f"{low}..{high}" if math.isfinite(high) else f"finite and >= {low}"
        raise ValueError(f"{owner}.{field} must be {bounds}, got {value!r}")


@functools.lru_cache(maxsize=1024)
def go_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` names, or ``None`` if Go's ``net.ParseIP`` would refuse it."""
    if "%" in text:  # a zone: Python accepts fe80::1%eth0, Go does not
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def go_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network ``text`` (``address/prefix``) names, host bits allowed, or ``None`` if Go's
    ``net.ParseCIDR`` would refuse it."""
    address_text, slash, prefix_text = text.partition("/")
    # Go wants decimal digits after the slash (leading zeros allowed, no netmask form).
    if not slash or not prefix_text.isascii() or not prefix_text.isdigit():
        return None
    digits = prefix_text.lstrip("0") or "0"
    address = go_ip(address_text)
    if address is None or len(digits) > 3 or int(digits) > address.max_prefixlen:
        return None
    return ipaddress.ip_network((address, int(digits)), strict=False)
