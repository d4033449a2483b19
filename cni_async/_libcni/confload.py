"""Loading network configuration from disk: files, plugin sub-directories, whole directories.

More forgiving than libcni: every file of a directory is loaded on its own, so one bad file
never hides the good ones; each is reported with its path and reason. Nothing is read or parsed
on the event loop (worker-thread hops), and only regular files are read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import anyio.to_thread
import msgspec

from .._errors import ConfigError, NetworkNotFound
from .._files import NotARegularFile, read_regular_file
from .._spec.netconf import (
    CONF_EXTENSIONS,
    CONFIG_EXTENSIONS,
    CONFLIST_EXTENSIONS,
    PLUGIN_DIR_EXTENSIONS,
    NetworkConfigList,
    PluginConfig,
    parse_conflist,
    parse_plugin_config,
    up_convert,
)

__all__ = [
    "ConfigDirectory",
    "load_config_dir",
    "load_config_file",
    "load_conflist_file",
    "with_directory_plugins",
]


def _extension(name: str) -> str:
    # Go's filepath.Ext: from the last dot on, so ".conf" itself has the extension ".conf".
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def _read_file(path: str) -> bytes:
    try:
        return read_regular_file(path)
    except NotARegularFile as exc:
        raise ConfigError("not a regular file", path=path) from exc
    except OSError as exc:
        raise ConfigError(f"error reading file: {exc.strerror or exc}", path=path) from exc


def _read_dir(directory: str, extensions: tuple[str, ...]) -> list[tuple[str, bytes | ConfigError]]:
    """List ``directory`` (a missing one is empty) and read every file with a wanted extension.

    :raises OSError: if the directory exists but cannot be listed
    """
    try:
        with os.scandir(directory) as it:
            paths = [
                entry.path
                for entry in it
                if _extension(entry.name) in extensions and not entry.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []
    paths.sort(key=os.fsencode)
    results: list[tuple[str, bytes | ConfigError]] = []
    for path in paths:
        try:
            results.append((path, _read_file(path)))
        except ConfigError as exc:
            results.append((path, exc))
    return results


def _plugin_dir(netlist: NetworkConfigList, path: str) -> str:
    name = netlist.name
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfigError(
            f"network name {name!r} cannot name a plugin directory (set loadOnlyInlinedPlugins "
            "to load only the inline plugins)",
            path=path,
            network=name,
        )
    return os.path.join(os.path.dirname(path), name)


async def _add_dir_plugins(
    netlist: NetworkConfigList, path: str, consulted: set[str]
) -> NetworkConfigList:
    return await anyio.to_thread.run_sync(_with_dir_plugins, netlist, path, consulted)


def _with_dir_plugins(
    netlist: NetworkConfigList, path: str, consulted: set[str]
) -> NetworkConfigList:
    """``netlist`` with its sub-directory's plugins (blocking: reads the directory)."""
    plugins = netlist.plugins
    if not netlist.load_only_inlined_plugins:
        directory = _plugin_dir(netlist, path)
        consulted.add(directory)
        try:
            files = _read_dir(directory, PLUGIN_DIR_EXTENSIONS)
        except OSError as exc:
            raise ConfigError(
                f"failed to read plugin config files: {exc.strerror or exc}",
                path=directory,
                network=netlist.name,
            ) from exc
        extra: list[PluginConfig] = []
        for file_path, data in files:
            try:
                if isinstance(data, ConfigError):
                    raise data
                extra.append(parse_plugin_config(data, path=file_path))
            except ConfigError as exc:
                exc.add_context(network=netlist.name)
                raise
        plugins += tuple(extra)
    if not plugins:
        raise ConfigError("no plugin configs found", path=path, network=netlist.name)
    return msgspec.structs.replace(netlist, plugins=plugins)


async def load_conflist_file(path: str) -> NetworkConfigList:
    """Load a ``.conflist`` file, with the plugins of its sub-directory ``<dir>/<name>/*.conf``.

    Sub-directory plugins are appended after the inline ones, in file-name order, unless
    ``loadOnlyInlinedPlugins`` is true. The file and the sub-directory are each read in one
    worker thread call; cancellation takes effect once the current one returns.

    :raises ConfigError: if the file cannot be read or parsed, the list name cannot be used as a
        directory name, a sub-directory plugin is invalid (the error names its file), or the
        list ends up with no plugins
    """
    data = await anyio.to_thread.run_sync(_read_file, path)
    return await _add_dir_plugins(parse_conflist(data, path=path), path, set())


def _single_conf(data: bytes, path: str) -> NetworkConfigList:
    conf = parse_plugin_config(data, path=path)
    # ocicni: a network without a name is named after its file, extension included
    # (path.Base), so that names, cache entries and IPAM stores match across a migration.
    return up_convert(conf, conf.name or os.path.basename(path))


async def load_config_file(path: str) -> NetworkConfigList:
    """Load one network file, by its extension: a ``.conflist`` list (see
    [`load_conflist_file`][cni_async.libcni.load_conflist_file]), or a ``.conf``/``.json`` single plugin,
    up-converted to a list named after the plugin's ``name`` or, when that is empty, the file's name
    (as ocicni).

    :raises ConfigError: if the extension is not one of these, or the file cannot be read or
        parsed
    """
    extension = _extension(os.path.basename(path))
    if extension in CONFLIST_EXTENSIONS:
        return await load_conflist_file(path)
    if extension not in CONF_EXTENSIONS:
        raise ConfigError(f"unsupported extension {extension!r}", path=path)
    return _single_conf(await anyio.to_thread.run_sync(_read_file, path), path)


@dataclass(frozen=True, slots=True)
class ConfigDirectory:
    """A snapshot of a configuration directory.

    :ivar path: the directory
    :ivar networks: the valid networks, in file order (full paths sorted bytewise); for two
        files with the same network name only the first is here
    :ivar invalid: ``(file, error)`` for every file that failed to load, or whose network name
        an earlier file already used, in file order
    :ivar sub_directories: every plugin sub-directory consulted (whether or not it exists), sorted
    :ivar shadowed: the networks of those later files, in file order (a snapshot falls back to
        one when the earlier file's network turns out unusable, as ocicni does)
    """

    path: str
    networks: tuple[NetworkConfigList, ...] = ()
    invalid: tuple[tuple[str, ConfigError], ...] = ()
    sub_directories: tuple[str, ...] = ()
    shadowed: tuple[NetworkConfigList, ...] = ()
    _by_name: Mapping[str, NetworkConfigList] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, NetworkConfigList] = {}
        for network in self.networks:
            by_name.setdefault(network.name, network)
        object.__setattr__(self, "_by_name", by_name)

    def get(self, name: str) -> NetworkConfigList | None:
        """The network called ``name``, or ``None``."""
        return self._by_name.get(name)

    def require(self, name: str) -> NetworkConfigList:
        """The network called ``name``.

        :raises NetworkNotFound: if no valid network has that name
        """
        network = self._by_name.get(name)
        if network is None:
            reason = f'no net configuration with name "{name}"'
            raise NetworkNotFound(
                reason if self._by_name else "no net configurations found",
                path=self.path,
                network=name,
            )
        return network

    @property
    def default(self) -> NetworkConfigList | None:
        """The first valid network in file order, or ``None`` when there is none."""
        return self.networks[0] if self.networks else None


async def load_config_dir(conf_dir: str) -> ConfigDirectory:
    """Load every ``.conf``, ``.conflist`` and ``.json`` file of a directory (not recursively).

    Files are taken in bytewise order of their full paths; directories are skipped and symbolic
    links read as files. Each file loads independently: a bad one is recorded in
    [`ConfigDirectory.invalid`][cni_async.libcni.ConfigDirectory] and the others still load. A network name
    already used by an earlier file is recorded as invalid too. Nothing is read or parsed on the
    event loop: the directory is read in one worker-thread call, then its files are parsed (with
    their plugin sub-directories) 256 to a call; cancellation takes effect once the current call
    returns.

    :return: the snapshot; a missing directory gives an empty one
    :raises ConfigError: if the directory exists but cannot be listed
    """
    try:
        files = await anyio.to_thread.run_sync(_read_dir, conf_dir, CONFIG_EXTENSIONS)
    except OSError as exc:
        raise ConfigError(
            f"failed to read configuration directory: {exc.strerror or exc}", path=conf_dir
        ) from exc
    networks: list[NetworkConfigList] = []
    seen: dict[str, str] = {}
    invalid: list[tuple[str, ConfigError]] = []
    shadowed: list[NetworkConfigList] = []
    consulted: set[str] = set()
    loaded: list[tuple[str, NetworkConfigList | ConfigError]] = []
    for start in range(0, len(files), _FILES_PER_HOP):
        chunk = files[start : start + _FILES_PER_HOP]
        loaded += await anyio.to_thread.run_sync(_load_files, chunk, consulted)
    for path, network in loaded:
        if isinstance(network, ConfigError):
            invalid.append((path, network))
            continue
        first = seen.get(network.name)
        if first is not None:
            invalid.append((path, _duplicate(network, first)))
            shadowed.append(network)
            continue
        seen[network.name] = path
        networks.append(network)
    return ConfigDirectory(
        path=conf_dir,
        networks=tuple(networks),
        invalid=tuple(invalid),
        sub_directories=tuple(sorted(consulted, key=os.fsencode)),
        shadowed=tuple(shadowed),
    )


# Files parsed per worker-thread hop: parsing thousands of files on the event loop stalled it
# for most of a second; in one hop, a cancellation would wait as long.
_FILES_PER_HOP: Final = 256


def _load_files(
    files: list[tuple[str, bytes | ConfigError]], consulted: set[str]
) -> list[tuple[str, NetworkConfigList | ConfigError]]:
    """Parse files read from a configuration directory (blocking: reads sub-directories)."""
    loaded: list[tuple[str, NetworkConfigList | ConfigError]] = []
    for path, data in files:
        try:
            if isinstance(data, ConfigError):
                raise data
            if _extension(os.path.basename(path)) in CONFLIST_EXTENSIONS:
                loaded.append(
                    (path, _with_dir_plugins(parse_conflist(data, path=path), path, consulted))
                )
            else:
                loaded.append((path, _single_conf(data, path)))
        except ConfigError as exc:
            loaded.append((path, exc))
    return loaded


def _duplicate(network: NetworkConfigList, first: str) -> ConfigError:
    return ConfigError(
        f"duplicate network name {network.name!r}: already defined in {first}",
        path=network.path,
        network=network.name,
    )


async def with_directory_plugins(netlist: NetworkConfigList, conf_dir: str) -> NetworkConfigList:
    """``netlist`` with the plugins of ``<conf_dir>/<name>/`` appended (as when it was loaded).

    For a list whose bytes were kept without its sub-directory plugins (a cache entry).
    Unchanged when the list sets ``loadOnlyInlinedPlugins``.

    :raises ConfigError: if the directory cannot be read, a plugin file is invalid, or the
        list ends up with no plugins
    """
    return await _add_dir_plugins(
        netlist, os.path.join(conf_dir, f"{netlist.name}.conflist"), set()
    )
