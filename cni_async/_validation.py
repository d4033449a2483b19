"""Validation of the names that reach plugins and cache paths.

libcni checks container IDs, network names and interface names on ADD only; we check them on
every verb and before any cache path is built, so no input can address a file outside the cache
directory.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from ._errors import (
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
