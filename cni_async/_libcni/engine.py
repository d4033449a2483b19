"""The protocol engine: plugin chains for ADD, CHECK, DEL, STATUS, GC and VERSION.

[`CNIEngine`][cni_async.libcni.CNIEngine] plays the part of libcni's ``CNIConfig`` for one set of plugin
directories and one cache directory. It holds no per-pod state and takes no locks: the caller
serialises operations on one attachment (SPEC "Lifecycle & Ordering"), exactly as with libcni. It
never rolls back on its own either; [`CNIPlugin`][cni_async.CNIPlugin] does that on top of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import msgspec

from .._errors import (
    CacheError,
    CheckNotSupported,
    CNIError,
    ConfigError,
    MultipleErrors,
    PluginError,
    ProtocolError,
    VersionError,
)
from .._fanout import errors_by_index
from .._json import decode_like_go
from .._spec.netconf import NetworkConfigList, PluginConfig, gc_stdin, plugin_stdin, status_stdin
from .._spec.results import (
    Result,
    convert_result,
    parse_result,
    result_from_builtins,
    result_to_builtins,
)
from .._spec.validation import validate_container_id, validate_network_name
from .._spec.versions import CURRENT_VERSION, version_at_least, version_at_least_or_false
from .cache import CacheEntry, ResultCache, decode_entry
from .exec import PluginExecutor, SpawnExecutor, cni_env
from .observing import PluginRunObserver
from .runner import PluginRunner, raw
from .runtime import PluginInfo, RuntimeConf, validate_request, version_decoder

__all__ = ["CNIEngine"]

logger = logging.getLogger("cni_async.engine")

T = TypeVar("T")

_VERSION_STDIN: Final = msgspec.json.encode({"cniVersion": CURRENT_VERSION})


class CNIEngine:
    """Runs CNI plugin chains against one set of plugin directories and one cache.

    :param bin_dirs: the directories searched for plugin binaries, in order (``CNI_PATH``)
    :param cache_dir: the cache directory (``/var/lib/cni`` by default, as libcni)
    :param executor: how plugins are run ([`SpawnExecutor`][cni_async.libcni.SpawnExecutor] by default)
    :param inherit_env: names of variables copied from this process's environment into every
        plugin's environment (only ``PATH`` by default; libcni passes everything)
    :param extra_env: further variables for every plugin's environment
    :param max_concurrent_execs: a limit on plugin processes running at once (at least 1), or
        ``None``; VERSION probes, which configuration loads make, do not count against it
    :param timeouts: the longest each verb's plugin may run, in seconds, by verb (``"ADD"``,
        ``"VERSION"``, ...); a plugin that runs longer is stopped and
        [`PluginTimeout`][cni_async.PluginTimeout] raised. Missing verbs use
        [`DEFAULT_TIMEOUTS`][cni_async.DEFAULT_TIMEOUTS]; ``None`` means no limit. The caller's own
        cancel scopes apply as well.
    :param observers: told about every plugin run (see [`Observer`][cni_async.Observer])
    :param owner: written into every cache entry this engine makes (see ``CNIPlugin``'s
        ``owner``)
    """

    def __init__(
        self,
        bin_dirs: Sequence[str],
        *,
        cache_dir: str | None = None,
        executor: PluginExecutor | None = None,
        inherit_env: Iterable[str] = ("PATH",),
        extra_env: Mapping[str, str] | None = None,
        max_concurrent_execs: int | None = None,
        timeouts: Mapping[str, float | None] | None = None,
        observers: Sequence[PluginRunObserver] = (),
        owner: str = "",
    ) -> None:
        self.cache = ResultCache(cache_dir, owner=owner)
        self._runner = PluginRunner(
            bin_dirs,
            executor=executor or SpawnExecutor(),
            inherit_env=inherit_env,
            extra_env=extra_env,
            max_concurrent_execs=max_concurrent_execs,
            timeouts=timeouts,
            observers=observers,
        )

    # -- one plugin -------------------------------------------------------------------------

    @property
    def bin_dirs(self) -> tuple[str, ...]:
        """The directories searched for plugin binaries, in order (``CNI_PATH``)."""
        return self._runner.bin_dirs

    @property
    def timeouts(self) -> dict[str, float | None]:
        """The longest each verb's plugin may run, in seconds (a change applies to later runs)."""
        return self._runner.timeouts

    @property
    def executor(self) -> PluginExecutor:
        """How plugins are run."""
        return self._runner.executor

    def plugin_env(self, verb: str, rt: RuntimeConf | None = None) -> dict[str, str]:
        """The environment a plugin gets for ``verb`` (for GC and STATUS, ``rt`` is ``None``)."""
        return self._runner.env(verb, rt)

    # -- chains -----------------------------------------------------------------------------

    async def add_network_list(self, netlist: NetworkConfigList, rt: RuntimeConf) -> Result:
        """Run ADD through the chain in order and cache the final result.

        Each plugin gets the previous plugin's result as ``prevResult``. The returned result is
        the last plugin's, in the version that plugin printed. Nothing is rolled back on failure
        (the SPEC puts the DEL on the caller). The two steps are
        [`add_chain`][cni_async.libcni.CNIEngine.add_chain] and a cache write of
        [`cache_entry`][cni_async.libcni.CNIEngine.cache_entry].

        :raises InvalidArgument: if the container ID, network name, ifname or args are invalid
        :raises PluginNotFound: if a plugin binary is missing
        :raises PluginError: if a plugin failed
        :raises ProtocolError: if a plugin printed something that is not a valid result
        :raises CacheError: if the result could not be cached (the plugins did run)
        """
        result = await self.add_chain(netlist, rt)
        await self.cache.write(self.cache_entry(netlist, rt, result))
        return result

    async def add_chain(self, netlist: NetworkConfigList, rt: RuntimeConf) -> Result:
        """Run ADD through the chain in order, as ``add_network_list`` does, without caching
        the result: for a caller that writes the cache entry itself (together with records of
        its own, say).

        :raises InvalidArgument: if the container ID, network name, ifname or args are invalid
        :raises PluginNotFound: if a plugin binary is missing
        :raises PluginError: if a plugin failed
        :raises ProtocolError: if a plugin printed something that is not a valid result
        """
        validate_request(netlist.name, rt)
        if not netlist.plugins:
            raise ConfigError("the network has no plugins", path=netlist.path, network=netlist.name)
        result: Result | None = None
        for plugin in netlist.plugins:
            stdin = plugin_stdin(
                netlist,
                plugin,
                prev_result=result_to_builtins(result) if result is not None else None,
                capability_args=rt.capability_args,
            )
            result = await self._runner.run_in_chain(
                netlist.name, plugin, "ADD", stdin, rt, _result_decoder(netlist, plugin)
            )
        assert result is not None
        return result

    @staticmethod
    def cache_entry(
        netlist: NetworkConfigList, rt: RuntimeConf, result: Result | None
    ) -> CacheEntry:
        """The cache entry of an attachment of ``netlist`` with ``rt``, as libcni writes it
        (``result`` ``None``: the record of an attachment about to be made)."""
        return CacheEntry(
            container_id=rt.container_id,
            config=netlist.bytes,
            if_name=rt.ifname,
            network_name=netlist.name,
            netns=rt.netns,
            cni_args=list(rt.args),
            capability_args=dict(rt.capability_args),
            result=result_to_builtins(result) if result is not None else None,
        )

    async def check_network_list(
        self, netlist: NetworkConfigList, rt: RuntimeConf
    ) -> Result | None:
        """Run CHECK through the chain in order, with the cached result as ``prevResult``.

        Nothing runs when the configuration sets ``disableCheck`` (and ``None`` is returned).

        :return: the cached result the plugins checked against (``None`` if there was none),
            so a caller that wants it need not read the cache again

        :raises CheckNotSupported: if the configuration's version is older than 0.4.0
        :raises CacheError: if the cached result exists but cannot be used
        :raises PluginError: the first plugin failure (later plugins are not run)
        """
        validate_request(netlist.name, rt)
        if not version_at_least(netlist.cni_version, "0.4.0"):
            raise CheckNotSupported(
                f"configuration version {netlist.cni_version!r} does not support the CHECK "
                "command; CHECK needs cniVersion 0.4.0 or later",
                network=netlist.name,
                verb="CHECK",
            )
        if netlist.disable_check:
            return None
        cached = await self.get_cached_result(netlist, rt)
        prev = result_to_builtins(cached) if cached is not None else None
        for plugin in netlist.plugins:
            stdin = plugin_stdin(
                netlist, plugin, prev_result=prev, capability_args=rt.capability_args
            )
            await self._runner.run_in_chain(netlist.name, plugin, "CHECK", stdin, rt, raw)
        return cached

    async def del_network_list(
        self, netlist: NetworkConfigList, rt: RuntimeConf, *, keep_going: bool = False
    ) -> None:
        """Run DEL through the chain in reverse order, then remove the cache entry.

        From version 0.4.0 on each plugin gets the cached result as ``prevResult``; a cache entry
        that is corrupt or cannot be converted is removed and DEL goes on without it. A plugin
        failure keeps the cache entry, so DEL can be retried. By default the first failure
        stops the chain, as in libcni; with ``keep_going`` every plugin is still tried.

        :raises VersionError: if the configuration's version is not a valid version
        :raises PluginError: the first plugin failure (or the only one, with ``keep_going``)
        :raises MultipleErrors: with ``keep_going``, if several plugins failed
        """
        validate_request(netlist.name, rt)
        if not netlist.plugins:
            raise ConfigError("the network has no plugins", path=netlist.path, network=netlist.name)
        prev: dict[str, Any] | None = None
        if version_at_least(netlist.cni_version, "0.4.0"):
            try:
                cached = await self.get_cached_result(netlist, rt)
            except CacheError as exc:
                logger.warning("dropping unusable cache entry: %s", exc)
                await self.cache.remove(netlist.name, rt.container_id, rt.ifname)
                cached = None
            prev = result_to_builtins(cached) if cached is not None else None
        errors: list[CNIError] = []
        for plugin in reversed(netlist.plugins):
            stdin = plugin_stdin(
                netlist, plugin, prev_result=prev, capability_args=rt.capability_args
            )
            try:
                await self._runner.run_in_chain(netlist.name, plugin, "DEL", stdin, rt, raw)
            except CNIError as exc:
                if not keep_going:
                    raise
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise MultipleErrors(
                f"DEL of network {netlist.name!r} failed in several plugins",
                errors,
                network=netlist.name,
            )
        await self.cache.remove(netlist.name, rt.container_id, rt.ifname)

    # -- the cache --------------------------------------------------------------------------

    async def get_cached_result(self, netlist: NetworkConfigList, rt: RuntimeConf) -> Result | None:
        """The cached result of an attachment, converted to the configuration's version.

        Files in the pre-``cniCacheV1`` format (a bare result) are read too. ``None`` when there
        is no entry, or the entry holds no result.

        :raises CacheError: if the entry exists but its result is unusable
        """
        raw = await self.cache.read(netlist.name, rt.container_id, rt.ifname)
        if raw is None:
            return None
        try:
            entry = decode_entry(raw)
            if entry is None:
                result = parse_result(raw, netlist.cni_version)
            elif entry.result is None:
                return None
            else:
                result = result_from_builtins(entry.result, netlist.cni_version)
            return convert_result(result, netlist.cni_version)
        except (ProtocolError, VersionError) as exc:
            raise CacheError(
                f"cached result of network {netlist.name!r} for container {rt.container_id!r} "
                f"is unusable: {exc.message}",
                path=self.cache.path(netlist.name, rt.container_id, rt.ifname),
                network=netlist.name,
            ) from exc

    async def get_cached_attachments(self, container_id: str | None = None) -> list[CacheEntry]:
        """Every cached attachment (of ``container_id`` only, when given), by file name."""
        if container_id is not None:
            validate_container_id(container_id)
        return await self.cache.attachments(container_id)

    # -- VERSION ----------------------------------------------------------------------------

    async def get_version_info(self, plugin_type: str) -> PluginInfo:
        """Ask a plugin which CNI versions it supports (the VERSION command).

        :raises PluginNotFound: if the binary is missing
        :raises PluginError: if the plugin failed
        :raises ProtocolError: if the answer cannot be decoded
        """
        try:
            out = await self._exec_version(plugin_type)
        except PluginError as exc:
            if exc.msg == "unknown CNI_COMMAND: VERSION" and not exc.details:
                return PluginInfo(cni_version="0.1.0", supported_versions=("0.1.0",))
            raise
        try:
            answer = decode_like_go(version_decoder, out)
        except msgspec.DecodeError as exc:
            raise ProtocolError(
                f"decoding version info: {exc}", plugin=plugin_type, verb="VERSION"
            ) from exc
        if not answer.cni_version:
            raise ProtocolError(
                "decoding version info: missing field cniVersion",
                plugin=plugin_type,
                verb="VERSION",
            )
        supported = answer.supported_versions
        if not supported:
            if answer.cni_version != "0.2.0":
                raise ProtocolError(
                    "decoding version info: missing field supportedVersions",
                    plugin=plugin_type,
                    verb="VERSION",
                )
            supported = ["0.1.0", "0.2.0"]
        return PluginInfo(cni_version=answer.cni_version, supported_versions=tuple(supported))

    async def _exec_version(self, plugin_type: str) -> bytes:
        # The dummies are for old plugins (skel before 0.3) that insisted on these variables.
        env = cni_env("VERSION", netns="dummy", ifname="dummy", base=self._runner.base_env)
        env["CNI_PATH"] = "dummy"
        return await self._runner.run(
            plugin_type, "VERSION", _VERSION_STDIN, env, None, decode=raw, limited=False
        )

    async def validate_network_list(
        self,
        netlist: NetworkConfigList,
        *,
        version_info: Callable[[str], Awaitable[PluginInfo]] | None = None,
    ) -> frozenset[str]:
        """Check that every plugin exists and supports the configuration's version.

        The plugins are asked concurrently (through ``version_info`` when given, e.g. a cache
        of VERSION answers). Returns the capabilities the plugins declare.

        :raises InvalidArgument: the network's name is not a valid CNI network name
        :raises VersionError: a plugin does not support the version
        :raises MultipleErrors: several plugins failed validation (each error is kept)
        """
        validate_network_name(netlist.name)
        ask = version_info or self.get_version_info
        expected = netlist.cni_version or "0.1.0"

        async def probe(_: int, plugin: PluginConfig) -> None:
            try:
                info = await ask(plugin.type)
            except CNIError as exc:
                exc.add_context(network=netlist.name)
                raise
            if expected not in info.supported_versions:
                raise VersionError(
                    f"plugin {plugin.type} does not support config version {expected!r} "
                    f"(it supports {', '.join(info.supported_versions)})",
                    plugin=plugin.type,
                    verb="VERSION",
                    network=netlist.name,
                )

        failures = await errors_by_index(netlist.plugins, probe)
        errors = [failures[i] for i in sorted(failures)]  # in chain order
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise MultipleErrors(
                f"network {netlist.name!r} failed validation", errors, network=netlist.name
            )
        return frozenset(
            cap for p in netlist.plugins for cap, enabled in p.capabilities.items() if enabled
        )

    # -- CNI 1.1: STATUS and GC -------------------------------------------------------------

    async def status_network_list(self, netlist: NetworkConfigList) -> None:
        """Ask each plugin, in order, whether it is ready (STATUS; version 1.1.0 and later).

        Older configurations are reported ready without running anything.

        :raises PluginError: the first plugin that is not ready (``PluginNotAvailable`` for
            code 50, ``LimitedConnectivity`` for 51)
        """
        if not version_at_least_or_false(netlist.cni_version, "1.1.0"):
            return
        for plugin in netlist.plugins:
            await self._runner.run_in_chain(
                netlist.name, plugin, "STATUS", status_stdin(netlist, plugin), None, raw
            )

    async def gc_network_list(
        self,
        netlist: NetworkConfigList,
        valid_attachments: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Remove stale attachments of a network, then run GC (version 1.1.0 and later).

        Every cached attachment of this network whose ``(container ID, ifname)`` is not in
        ``valid_attachments`` gets DEL with the current configuration; then, for 1.1.0 and later,
        each plugin gets GC with the valid attachments. Nothing happens when the configuration
        sets ``disableGC``. Every step is tried even when an earlier one failed.

        :raises MultipleErrors: if any step failed (each error is kept)
        """
        if netlist.disable_gc:
            return
        valid = set(valid_attachments or ())
        errors: list[CNIError] = []
        try:
            cached = await self.cache.attachments()
        except CNIError as exc:  # the plugins' own GC below still runs
            errors.append(exc)
            cached = []
        for entry in cached:
            if entry.network_name != netlist.name or (entry.container_id, entry.if_name) in valid:
                continue
            rt = RuntimeConf(
                container_id=entry.container_id,
                netns=entry.netns,
                ifname=entry.if_name,
                args=tuple(entry.cni_args),
                capability_args=entry.capability_args,
            )
            try:
                await self.del_network_list(netlist, rt)
            except CNIError as exc:
                errors.append(exc)
        try:
            await self.gc_plugins(netlist, sorted(valid) if valid_attachments is not None else None)
        except MultipleErrors as exc:
            errors.extend(exc.errors)
        if errors:
            raise MultipleErrors(
                f"garbage collection of network {netlist.name!r} failed",
                errors,
                network=netlist.name,
            )

    async def gc_plugins(
        self, netlist: NetworkConfigList, valid_attachments: Sequence[tuple[str, str]] | None
    ) -> None:
        """Send the GC verb to every plugin of a network (version 1.1.0 and later only).

        Each plugin gets the valid attachments as ``cni.dev/valid-attachments`` (and its alias
        ``cni.dev/attachments``), or neither key when ``valid_attachments`` is ``None``, as
        libcni; every plugin is called even when an earlier one failed.

        :raises MultipleErrors: if any plugin failed (each error is kept)
        """
        if netlist.disable_gc or not version_at_least_or_false(netlist.cni_version, "1.1.0"):
            return
        errors: list[CNIError] = []
        for plugin in netlist.plugins:
            stdin = gc_stdin(
                netlist,
                plugin,
                list(valid_attachments) if valid_attachments is not None else msgspec.UNSET,
            )
            try:
                await self._runner.run_in_chain(netlist.name, plugin, "GC", stdin, None, raw)
            except CNIError as exc:
                errors.append(exc)
        if errors:
            raise MultipleErrors(
                f"GC of network {netlist.name!r} failed", errors, network=netlist.name
            )


def _result_decoder(netlist: NetworkConfigList, plugin: PluginConfig) -> Callable[[bytes], Result]:
    """ADD's output as a result, with the error's context filled in if it is not one."""

    def decode(output: bytes) -> Result:
        try:
            return parse_result(output, netlist.cni_version)
        except CNIError as exc:
            exc.add_context(plugin=plugin.type, verb="ADD", network=netlist.name)
            raise

    return decode
