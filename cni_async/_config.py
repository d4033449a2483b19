"""Network configuration: parsing, loading from disk, and building each plugin's stdin.

Parsing follows libcni (HEAD) rule for rule and in the same order, with three deliberate
differences: known fields are matched case-sensitively (Go's struct decoding is not), integers
stay exact (Go rounds them through float64), and a list name that is used as a plugin
sub-directory name must be a plain file name. Loading a directory is more forgiving than libcni:
every file is loaded on its own, so one bad file never hides the good ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio.to_thread
import msgspec

from ._errors import ConfigError, NetworkNotFound, VersionError
from ._files import NotARegularFile, read_regular_file
from ._specversion import select_cni_version

__all__ = [
    "CONFIG_EXTENSIONS",
    "CONFLIST_EXTENSIONS",
    "CONF_EXTENSIONS",
    "PLUGIN_DIR_EXTENSIONS",
    "ConfigDirectory",
    "NetworkConfigList",
    "PluginConfig",
    "conflist_from_plugin",
    "gc_stdin",
    "load_config_dir",
    "load_config_file",
    "load_conflist_file",
    "parse_conflist",
    "parse_plugin_config",
    "plugin_stdin",
    "status_stdin",
    "with_directory_plugins",
]

CONFLIST_EXTENSIONS: Final = (".conflist",)
CONF_EXTENSIONS: Final = (".conf", ".json")
CONFIG_EXTENSIONS: Final = CONFLIST_EXTENSIONS + CONF_EXTENSIONS
PLUGIN_DIR_EXTENSIONS: Final = (".conf",)

_Bytes = bytes  # the field named ``bytes`` below shadows the builtin inside class bodies

# Everything msgspec (or the UTF-8 check it runs first) can raise on hostile input.
_DECODE_ERRORS: Final = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


class PluginConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin's configuration object, as found in a list's ``plugins`` or in a ``.conf`` file.

    :ivar type: the plugin binary's name (never empty)
    :ivar name: the plugin-level ``name`` (``""`` when absent); the list's name is what is sent
    :ivar cni_version: the plugin-level ``cniVersion`` (``""`` when absent)
    :ivar capabilities: the ``capabilities`` object
    :ivar config: the decoded JSON object; shared, so never mutate it (copy before injecting)
    :ivar bytes: the raw JSON: the file's bytes verbatim, or the list element re-encoded
    :ivar path: the file it came from (the list's file for an inline plugin), or ``None``
    """

    type: str
    name: str = ""
    cni_version: str = ""
    capabilities: Mapping[str, bool] = msgspec.field(default_factory=dict)
    config: Mapping[str, Any] = msgspec.field(default_factory=dict)
    bytes: _Bytes = b""
    path: str | None = None


class NetworkConfigList(msgspec.Struct, frozen=True, kw_only=True):
    """A network: a named, ordered chain of plugins.

    :ivar name: the network name
    :ivar cni_version: the version the list runs at, after ``cniVersions`` negotiation
    :ivar disable_check: skip CHECK for this network
    :ivar disable_gc: skip GC (stale-attachment DELs and the GC verb) for this network
    :ivar load_only_inlined_plugins: do not load plugins from the ``<dir>/<name>/`` directory
    :ivar plugins: the plugins, inline ones first, then those of the plugin sub-directory
    :ivar bytes: the list file's bytes verbatim (sub-directory plugins not included), or the
        synthesised list for an up-converted single plugin; this is what the cache stores
    :ivar path: the file it came from, or ``None`` for configuration given as bytes
    """

    name: str
    cni_version: str = ""
    disable_check: bool = False
    disable_gc: bool = False
    load_only_inlined_plugins: bool = False
    plugins: tuple[PluginConfig, ...] = ()
    bytes: _Bytes = b""
    path: str | None = None


# Wire formats. Every field of the list is loosely typed so that the checks below can run in
# libcni's order (name, cniVersion, cniVersions, the flags, plugins) and give libcni's reasons;
# the plugin object is strictly typed, as Go decodes it into a struct.


class _ListWire(msgspec.Struct, frozen=True, rename="camel"):
    name: Any = msgspec.UNSET
    cni_version: Any = msgspec.UNSET
    cni_versions: Any = msgspec.UNSET
    disable_check: Any = msgspec.UNSET
    disable_gc: Any = msgspec.field(default=msgspec.UNSET, name="disableGC")
    load_only_inlined_plugins: Any = msgspec.UNSET
    plugins: Any = msgspec.UNSET


class _IPAMWire(msgspec.Struct, frozen=True):
    type: str | None = None


class _DNSWire(msgspec.Struct, frozen=True):
    nameservers: list[str] | None = None
    domain: str | None = None
    search: list[str] | None = None
    options: list[str] | None = None


class _AttachmentWire(msgspec.Struct, frozen=True):
    container_id: str = msgspec.field(default="", name="containerID")
    ifname: str = ""


class _PluginWire(msgspec.Struct, frozen=True):
    cni_version: str | None = msgspec.field(default=None, name="cniVersion")
    name: str | None = None
    type: str | None = None
    capabilities: dict[str, bool] | None = None
    ipam: _IPAMWire | None = None
    dns: _DNSWire | None = None
    prev_result: dict[str, Any] | None = msgspec.field(default=None, name="prevResult")
    valid_attachments: list[_AttachmentWire] | None = msgspec.field(
        default=None, name="cni.dev/valid-attachments"
    )


_list_decoder: Final = msgspec.json.Decoder(_ListWire)
_any_decoder: Final = msgspec.json.Decoder()


def _enc_hook(obj: object) -> object:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot encode objects of type {type(obj).__name__}")


# Sorted keys and compact separators, as Go encodes the generic maps libcni (re)generates.
_encoder: Final = msgspec.json.Encoder(order="sorted", enc_hook=_enc_hook)


_JSON_TYPES: Final[Mapping[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _plugin_from_object(obj: object, data: bytes | None, path: str | None) -> PluginConfig:
    if not isinstance(obj, dict):
        raise ConfigError(
            f"invalid plugin configuration: expected an object, got {_json_type(obj)}", path=path
        )
    try:
        wire = msgspec.convert(obj, _PluginWire)
        if data is None:  # an element of a list's "plugins": re-encoded, as libcni does
            data = _encoder.encode(obj)
    except _DECODE_ERRORS as exc:
        raise ConfigError(f"invalid plugin configuration: {exc}", path=path) from exc
    if not wire.type:
        raise ConfigError("missing 'type'", path=path)
    return PluginConfig(
        type=wire.type,
        name=wire.name or "",
        cni_version=wire.cni_version or "",
        capabilities=wire.capabilities or {},
        config=obj,
        bytes=data,
        path=path,
    )


def parse_plugin_config(data: bytes, *, path: str | None = None) -> PluginConfig:
    """Parse one plugin configuration object (a ``.conf`` file, or one element of ``plugins``).

    Unknown keys are kept (in [`PluginConfig.config`][cni_async.PluginConfig] and
    [`PluginConfig.bytes`][cni_async.PluginConfig]); the known ones must have their JSON type,
    ``null`` counting as absent.

    :param data: the JSON bytes
    :param path: the file the bytes came from, named in errors
    :raises ConfigError: if the bytes are not a JSON object, a known field has the wrong type, or
        ``type`` is missing or empty
    """
    try:
        obj = _any_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise ConfigError(f"invalid JSON: {exc}", path=path) from exc
    return _plugin_from_object(obj, data, path)


def _read_bool(value: object, key: str, path: str | None) -> bool:
    if value is msgspec.UNSET:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ConfigError(f"invalid value {lowered!r} for {key}", path=path)
    raise ConfigError(f"invalid type {_json_type(value)} for {key}", path=path)


def _negotiate(wire: _ListWire, cni_version: str, path: str | None) -> str:
    versions = wire.cni_versions
    if versions is msgspec.UNSET:
        return cni_version
    if not isinstance(versions, list):
        raise ConfigError(
            f"invalid type for cniVersions: {_json_type(versions)} (expected an array)", path=path
        )
    for index, entry in enumerate(versions):
        if not isinstance(entry, str):
            raise ConfigError(
                f"invalid type for cniVersions index {index}: {_json_type(entry)}", path=path
            )
    try:
        return select_cni_version(cni_version, versions)
    except VersionError as exc:
        # select_cni_version checks every entry before cniVersion and names the bad entry.
        reason = exc.message
        if not reason.startswith("invalid cniVersions entry"):
            reason = f"invalid cniVersion {cni_version!r}: {reason}"
        raise ConfigError(reason, path=path) from exc


def parse_conflist(data: bytes, *, path: str | None = None) -> NetworkConfigList:
    """Parse a network configuration list (``.conflist``), without its plugin sub-directory.

    A list without a ``plugins`` key parses to zero plugins (the sub-directory may supply them;
    [`load_conflist_file`][cni_async.load_conflist_file] rejects a list that stays empty). Each
    plugin's bytes are its object re-encoded with sorted keys; the list keeps ``data`` verbatim.

    :param data: the JSON bytes
    :param path: the file the bytes came from, named in errors
    :raises ConfigError: on invalid JSON, a missing or non-string ``name``, a bad ``cniVersion``,
        ``cniVersions``, ``disableCheck``, ``disableGC``, ``loadOnlyInlinedPlugins`` or
        ``plugins`` value, or an invalid plugin object
    """
    try:
        wire = _list_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise ConfigError(f"invalid JSON: {exc}", path=path) from exc
    if wire.name is msgspec.UNSET:
        raise ConfigError("no name", path=path)
    if not isinstance(wire.name, str):
        raise ConfigError(f"invalid name type {_json_type(wire.name)}", path=path)
    name: str = wire.name
    cni_version = wire.cni_version
    if cni_version is msgspec.UNSET:
        cni_version = ""
    elif not isinstance(cni_version, str):
        raise ConfigError(f"invalid cniVersion type {_json_type(cni_version)}", path=path)
    cni_version = _negotiate(wire, cni_version, path)
    disable_check = _read_bool(wire.disable_check, "disableCheck", path)
    disable_gc = _read_bool(wire.disable_gc, "disableGC", path)
    inlined_only = _read_bool(wire.load_only_inlined_plugins, "loadOnlyInlinedPlugins", path)

    plugins: list[PluginConfig] = []
    if wire.plugins is msgspec.UNSET:
        if inlined_only:
            raise ConfigError("`loadOnlyInlinedPlugins` is true, and no 'plugins' key", path=path)
    elif not isinstance(wire.plugins, list):
        raise ConfigError(f"invalid 'plugins' type {_json_type(wire.plugins)}", path=path)
    elif not wire.plugins:
        raise ConfigError("no plugins in list", path=path)
    else:
        for index, obj in enumerate(wire.plugins):
            try:
                plugins.append(_plugin_from_object(obj, None, path))
            except ConfigError as exc:
                raise ConfigError(
                    f"failed to parse plugin config {index}: {exc.reason}", path=path
                ) from exc

    return NetworkConfigList(
        name=name,
        cni_version=cni_version,
        disable_check=disable_check,
        disable_gc=disable_gc,
        load_only_inlined_plugins=inlined_only,
        plugins=tuple(plugins),
        bytes=data,
        path=path,
    )


def _up_convert(conf: PluginConfig, name: str) -> NetworkConfigList:
    # libcni encodes this object and parses it again as a list; that parse cannot fail, so the
    # list is built directly (the plugin keeps its own bytes).
    synthesised = {"cniVersion": conf.cni_version, "name": name, "plugins": [conf.config]}
    try:
        data = _encoder.encode(synthesised)
    except RecursionError as exc:  # decodable, but two levels deeper once wrapped in a list
        raise ConfigError("nested too deeply to make a list of", path=conf.path) from exc
    return NetworkConfigList(
        name=name, cni_version=conf.cni_version, plugins=(conf,), bytes=data, path=conf.path
    )


def conflist_from_plugin(conf: PluginConfig) -> NetworkConfigList:
    """Up-convert a single plugin configuration into a one-plugin list.

    The list takes the plugin's ``name`` and ``cniVersion`` (``""`` when absent) and its bytes
    are the synthesised list ``{"cniVersion":…,"name":…,"plugins":[…]}``. List-level options
    written in the plugin object (``disableCheck``, ``cniVersions``, ...) are not hoisted.

    :raises ConfigError: the object is nested too deeply to be encoded inside a list
    """
    return _up_convert(conf, conf.name)


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
    return _up_convert(conf, conf.name or os.path.basename(path))


async def load_config_file(path: str) -> NetworkConfigList:
    """Load one network file, by its extension: a ``.conflist`` list (see
    [`load_conflist_file`][cni_async.load_conflist_file]), or a ``.conf``/``.json`` single plugin,
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
    [`ConfigDirectory.invalid`][cni_async.ConfigDirectory] and the others still load. A network name
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


def _base_stdin(netlist: NetworkConfigList, plugin: PluginConfig) -> dict[str, Any]:
    # A shallow copy: only top-level keys are replaced, nested values are shared read-only.
    obj = dict(plugin.config)
    obj["name"] = netlist.name
    obj["cniVersion"] = netlist.cni_version
    return obj


def plugin_stdin(
    netlist: NetworkConfigList,
    plugin: PluginConfig,
    *,
    prev_result: Mapping[str, Any] | None,
    capability_args: Mapping[str, Any],
) -> bytes:
    """Build the stdin of one plugin of a list for ADD, CHECK or DEL.

    ``name`` and ``cniVersion`` are always the list's. ``prevResult`` is set to ``prev_result``
    when one is given; otherwise a ``prevResult`` written in the plugin's configuration passes
    through. ``runtimeConfig`` holds each capability the plugin declares ``true`` that is a key of
    ``capability_args``; when there is any, it replaces the configuration's own
    ``runtimeConfig``. All other keys pass through. Keys come out sorted.

    :raises TypeError: if ``prev_result`` or a forwarded capability value cannot be encoded
    """
    obj = _base_stdin(netlist, plugin)
    if prev_result is not None:
        obj["prevResult"] = prev_result
    runtime_config = {
        cap: capability_args[cap]
        for cap, enabled in plugin.capabilities.items()
        if enabled and cap in capability_args
    }
    if runtime_config:
        obj["runtimeConfig"] = runtime_config
    return _encoder.encode(obj)


def gc_stdin(
    netlist: NetworkConfigList,
    plugin: PluginConfig,
    valid_attachments: Sequence[tuple[str, str]] | msgspec.UnsetType | None,
) -> bytes:
    """Build the stdin of one plugin of a list for GC.

    ``name`` and ``cniVersion`` are the list's. ``valid_attachments`` (``(container_id, ifname)``
    pairs) is sent under both ``cni.dev/valid-attachments`` and its alias ``cni.dev/attachments``
    as ``{"containerID": …, "ifname": …}`` objects; ``None`` sends ``null`` (libcni's ``GCArgs``
    with a nil list) and ``msgspec.UNSET`` leaves both keys out (libcni's nil ``GCArgs``).
    """
    obj = _base_stdin(netlist, plugin)
    if valid_attachments is not msgspec.UNSET:
        value = (
            None
            if valid_attachments is None
            else [{"containerID": cid, "ifname": ifname} for cid, ifname in valid_attachments]
        )
        obj["cni.dev/valid-attachments"] = value
        obj["cni.dev/attachments"] = value
    return _encoder.encode(obj)


def status_stdin(netlist: NetworkConfigList, plugin: PluginConfig) -> bytes:
    """Build the stdin of one plugin of a list for STATUS: its configuration with the list's
    ``name`` and ``cniVersion``."""
    return _encoder.encode(_base_stdin(netlist, plugin))


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
