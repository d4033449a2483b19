"""Network configuration: parsing, up-conversion, and building each plugin's stdin.

Parsing follows libcni (HEAD) rule for rule and in the same order, with three deliberate
differences: known fields are matched case-sensitively (Go's struct decoding is not), integers
stay exact (Go rounds them through float64), and a list name that is used as a plugin
sub-directory name must be a plain file name. Loading files and directories is ``_confload``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from .._errors import ConfigError, VersionError
from .versions import select_cni_version

__all__ = [
    "CONFIG_EXTENSIONS",
    "CONFLIST_EXTENSIONS",
    "CONF_EXTENSIONS",
    "PLUGIN_DIR_EXTENSIONS",
    "NetworkConfigList",
    "PluginConfig",
    "conflist_from_plugin",
    "gc_stdin",
    "parse_conflist",
    "parse_plugin_config",
    "plugin_stdin",
    "status_stdin",
    "up_convert",
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

    Unknown keys are kept (in [`PluginConfig.config`][cni_async.libcni.PluginConfig] and
    [`PluginConfig.bytes`][cni_async.libcni.PluginConfig]); the known ones must have their JSON type,
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
    [`load_conflist_file`][cni_async.libcni.load_conflist_file] rejects a list that stays empty). Each
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


def up_convert(conf: PluginConfig, name: str) -> NetworkConfigList:
    """``conf`` as a one-plugin list called ``name`` (see ``conflist_from_plugin``)."""
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
    return up_convert(conf, conf.name)


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
