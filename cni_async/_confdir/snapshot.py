"""Immutable configuration snapshots: what a [`CNIPlugin`][cni_async.CNIPlugin] operation works on.

Data only: a snapshot is built (validated, VERSION answers cached) by ``_snapshot_build``; a
reload swaps the reference, so no operation ever sees half of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import CNIError, NetworkNotFound
from .._spec.netconf import NetworkConfigList

__all__ = ["ConfigSnapshot"]


@dataclass(frozen=True)
class ConfigSnapshot:
    """One generation of the configuration directory, validated.

    :ivar conf_dir: the configuration directory
    :ivar networks: the usable networks, in file order
    :ivar invalid: ``(file, error)`` for every file that could not be loaded or whose network
        failed validation (a missing plugin binary, an unsupported version), in file order
    :ivar default: the default network, or ``None`` while there is none
    :ivar generation: increases by one with every reload
    :ivar plugins: the executable files of the plugin directories, by name (the first
        directory that has one wins)
    :ivar kept_last_good: invalid files whose last good version is still in use
    :ivar sub_directories: the plugin sub-directories of the loaded lists (for watching)
    """

    conf_dir: str
    networks: tuple[NetworkConfigList, ...] = ()
    invalid: tuple[tuple[str, CNIError], ...] = ()
    default: NetworkConfigList | None = None
    generation: int = 0
    plugins: Mapping[str, str] = field(default_factory=dict)
    kept_last_good: frozenset[str] = frozenset()
    sub_directories: tuple[str, ...] = ()
    _by_name: Mapping[str, NetworkConfigList] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> NetworkConfigList | None:
        """The usable network called ``name``, or ``None``."""
        return self._by_name.get(name)

    def missing_default(self, default_name: str | None) -> NetworkNotFound:
        """The error to raise while there is no default network."""
        if default_name:
            return NetworkNotFound(
                f"the default network {default_name!r} has no valid configuration; install it, "
                "or check the files listed as invalid",
                path=self.conf_dir,
                network=default_name,
            )
        return NetworkNotFound(
            "no valid CNI network configuration found; has your network provider started?",
            path=self.conf_dir,
        )
