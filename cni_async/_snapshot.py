"""Immutable configuration snapshots: what a :class:`~cni_async.CNIPlugin` operation works on.

A snapshot is built from the configuration directory without taking any lock that pod operations
hold; a reload swaps the reference. Each network is validated as ocicni does (every plugin exists
and supports the network's version), with the VERSION answers cached per plugin binary (path,
inode, size, mtime), so a reload does not exec every plugin again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio

from ._config import ConfigDirectory, NetworkConfigList, load_config_dir
from ._engine import CNIEngine, PluginInfo
from ._errors import CNIError, MultipleErrors, NetworkNotFound, VersionError

__all__ = ["ConfigSnapshot", "VersionCache", "build_snapshot"]

logger = logging.getLogger("cni_async.config")

_BinaryKey = tuple[str, int, int, int]


class VersionCache:
    """VERSION answers per plugin binary, keyed by (path, inode, size, mtime)."""

    def __init__(self) -> None:
        self._answers: dict[_BinaryKey, PluginInfo] = {}

    async def version_info(self, engine: CNIEngine, plugin_type: str) -> PluginInfo:
        """The plugin's VERSION answer, from the cache while its binary is unchanged."""
        path = engine.executor.find_plugin(plugin_type, engine.bin_dirs)
        try:
            st = os.stat(path)
        except OSError:
            return await engine.get_version_info(plugin_type)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        info = self._answers.get(key)
        if info is None:
            info = await engine.get_version_info(plugin_type)
            self._answers = {k: v for k, v in self._answers.items() if k[0] != path}
            self._answers[key] = info
        return info


@dataclass(frozen=True)
class ConfigSnapshot:
    """One generation of the configuration directory, validated.

    :ivar conf_dir: the configuration directory
    :ivar networks: the usable networks, in file order
    :ivar invalid: ``(file, error)`` for every file that could not be loaded or whose network
        failed validation (a missing plugin binary, an unsupported version), in file order
    :ivar default: the default network, or ``None`` while there is none
    :ivar generation: increases by one with every reload
    """

    conf_dir: str
    networks: tuple[NetworkConfigList, ...] = ()
    invalid: tuple[tuple[str, CNIError], ...] = ()
    default: NetworkConfigList | None = None
    generation: int = 0
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


async def _validate(
    engine: CNIEngine, versions: VersionCache, network: NetworkConfigList
) -> CNIError | None:
    expected = network.cni_version or "0.1.0"
    errors: list[CNIError] = []
    for plugin in network.plugins:
        try:
            info = await versions.version_info(engine, plugin.type)
        except CNIError as exc:
            exc.add_context(network=network.name)
            errors.append(exc)
            continue
        if expected not in info.supported_versions:
            errors.append(
                VersionError(
                    f"plugin {plugin.type} does not support config version {expected!r} "
                    f"(it supports {', '.join(info.supported_versions)})",
                    plugin=plugin.type,
                    verb="VERSION",
                    network=network.name,
                )
            )
    if len(errors) > 1:
        return MultipleErrors(f"network {network.name!r} is not usable", errors)
    return errors[0] if errors else None


async def build_snapshot(
    conf_dir: str,
    engine: CNIEngine,
    versions: VersionCache,
    *,
    default_name: str | None,
    generation: int,
) -> ConfigSnapshot:
    """Load and validate the configuration directory into a new snapshot.

    The default network is ``default_name`` when given (and usable), otherwise the first usable
    network in file order.
    """
    directory: ConfigDirectory = await load_config_dir(conf_dir)
    verdicts: dict[int, CNIError | None] = {}

    async def check(index: int, network: NetworkConfigList) -> None:
        verdicts[index] = await _validate(engine, versions, network)

    async with anyio.create_task_group() as tg:
        for index, network in enumerate(directory.networks):
            tg.start_soon(check, index, network)

    usable: list[NetworkConfigList] = []
    invalid: list[tuple[str, CNIError]] = list(directory.invalid)
    for index, network in enumerate(directory.networks):
        error = verdicts[index]
        if error is None:
            usable.append(network)
        else:
            invalid.append((network.path or conf_dir, error))
    invalid.sort(key=lambda item: os.fsencode(item[0]))
    by_name = {n.name: n for n in usable}
    default = by_name.get(default_name) if default_name else (usable[0] if usable else None)
    for path, error in invalid:
        logger.warning("ignoring CNI configuration %s: %s", path, error)
    return ConfigSnapshot(
        conf_dir=conf_dir,
        networks=tuple(usable),
        invalid=tuple(invalid),
        default=default,
        generation=generation,
        _by_name=by_name,
    )
