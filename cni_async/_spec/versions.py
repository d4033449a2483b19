"""CNI specification versions: parsing, comparison and ``cniVersions`` negotiation.

Version strings follow libcni's rules: ``""`` means 0.1.0, missing minor/micro parts are 0, parts
are base-10 integers with an optional sign (``"0.-42.0"`` parses), and four or more parts are
refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from .._errors import VersionError

__all__ = [
    "ALL_VERSIONS",
    "CURRENT_VERSION",
    "parse_version",
    "select_cni_version",
    "version_at_least",
]

CURRENT_VERSION: Final = "1.1.0"
"""The newest CNI specification version this library speaks."""

ALL_VERSIONS: Final = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""Every CNI specification version this library can read and write results for."""

_INT64_MAX: Final = 2**63 - 1
_ATOI = re.compile(r"[+-]?[0-9]+")
_PART_NAMES: Final = ("major", "minor", "micro")


def _atoi(part: str, which: str, version: str) -> int:
    if not _ATOI.fullmatch(part):
        raise VersionError(
            f"invalid version {version!r}: failed to convert {which} version part {part!r}: "
            f"not an integer"
        )
    sign = "-" if part.startswith("-") else ""
    digits = part.lstrip("+-").lstrip("0") or "0"
    # int() refuses strings of over 4300 digits; anything past 19 is out of range anyway.
    value = int(sign + digits) if len(digits) <= 19 else _INT64_MAX + 1
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise VersionError(
            f"invalid version {version!r}: failed to convert {which} version part {part!r}: "
            f"value out of range"
        )
    return value


@functools.lru_cache(maxsize=64)  # a handful of versions, parsed on every plugin call
def parse_version(version: str) -> tuple[int, int, int]:
    """Parse a CNI version string into ``(major, minor, micro)``.

    :raises VersionError: if the string is not a valid version
    """
    if version == "":
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) > 3:
        raise VersionError(f"invalid version {version!r}: too many parts")
    numbers = [_atoi(p, _PART_NAMES[i], version) for i, p in enumerate(parts)]
    numbers += [0] * (3 - len(numbers))
    return (numbers[0], numbers[1], numbers[2])


def version_at_least(version: str, minimum: str) -> bool:
    """Whether ``version`` is greater than or equal to ``minimum``.

    :raises VersionError: if either string is not a valid version
    """
    return parse_version(version) >= parse_version(minimum)


def version_at_least_or_false(version: str, minimum: str) -> bool:
    """Like ``version_at_least()``, but an unparsable version counts as "no" (GC/STATUS gates)."""
    try:
        return version_at_least(version, minimum)
    except VersionError:
        return False


def select_cni_version(cni_version: str, cni_versions: Iterable[str] | None) -> str:
    """The version a configuration list runs at, given ``cniVersion`` and ``cniVersions``.

    With a ``cniVersions`` array, the highest entry not newer than
    [`CURRENT_VERSION`][cni_async.libcni.CURRENT_VERSION] wins (``cniVersion`` takes part too when it is
    set and not too new); with none left, or without the array, ``cniVersion`` is used as written.

    :raises VersionError: if an entry of ``cniVersions``, or ``cniVersion`` when the array is
        present, is not a valid version
    """
    if cni_versions is None:
        return cni_version
    current = parse_version(CURRENT_VERSION)
    candidates: list[tuple[tuple[int, int, int], str]] = []
    for index, entry in enumerate(cni_versions):
        try:
            parsed = parse_version(entry)
        except VersionError as exc:
            raise VersionError(
                f"invalid cniVersions entry {entry!r} at index {index}: {exc}"
            ) from exc
        if parsed <= current:
            candidates.append((parsed, entry))
    if cni_version:
        parsed = parse_version(cni_version)
        if parsed <= current:
            candidates.append((parsed, cni_version))
    if not candidates:
        return cni_version
    return max(candidates, key=lambda c: c[0])[1]
