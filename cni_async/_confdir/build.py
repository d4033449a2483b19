"""Building configuration snapshots from the configuration directory.

A snapshot is built without taking any lock that pod operations hold. Each network is validated
as ocicni does (every plugin exists and supports the network's version), with the VERSION
answers cached per plugin binary (path, inode, size, mtime), so a reload does not exec every
plugin again.
"""

from __future__ import annotations

import copy
import logging
import os

import anyio

from .._errors import CNIError
from .._fanout import errors_by_index
from .._libcni.confload import ConfigDirectory, load_config_dir
from .._libcni.engine import CNIEngine
from .._libcni.runtime import PluginInfo
from .._spec.netconf import NetworkConfigList
from .snapshot import ConfigSnapshot

__all__ = ["VersionCache", "build_snapshot"]

logger = logging.getLogger("cni_async.config")

_BinaryKey = tuple[str, int, int, int, int, int]


class VersionCache:
    """VERSION answers per plugin binary, keyed by (path, inode, size, mtime, ctime, mode).

    Concurrent questions about one binary share one VERSION exec, and its failure: a plugin
    that hangs costs a reload one timeout, not one per network that uses it. Failures are not
    cached beyond that.
    """

    def __init__(self, engine: CNIEngine) -> None:
        self._engine = engine
        self._answers: dict[_BinaryKey, PluginInfo] = {}
        self._asking: dict[_BinaryKey, _Question] = {}

    async def version_info(self, plugin_type: str) -> PluginInfo:
        """The plugin's VERSION answer, from the cache while its binary is unchanged."""
        engine = self._engine
        path = engine.executor.find_plugin(plugin_type, engine.bin_dirs)
        try:
            st = os.stat(path)
        except OSError:
            return await engine.get_version_info(plugin_type)
        # ctime and mode too: a chmod -x must not keep an answer the binary cannot give now.
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        while key not in self._answers:
            asking = self._asking.get(key)
            if asking is not None:
                await asking.answered.wait()
                if asking.error is not None:
                    # A copy each: callers add their own network to the error's context.
                    raise copy.copy(asking.error)
                continue  # answered, or the asker was cancelled: ask again
            self._asking[key] = asking = _Question()
            try:
                info = await engine.get_version_info(plugin_type)
            except CNIError as exc:
                asking.error = copy.copy(exc)
                raise
            finally:
                del self._asking[key]
                asking.answered.set()
            self._answers = {k: v for k, v in self._answers.items() if k[0] != path}
            self._answers[key] = info
        return self._answers[key]


class _Question:
    """A VERSION exec in flight, for those who wait for its answer."""

    __slots__ = ("answered", "error")

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.error: CNIError | None = None


def _plugin_inventory(bin_dirs: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for directory in bin_dirs:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.name not in found and entry.is_file() and os.access(entry.path, os.X_OK):
                    found[entry.name] = entry.path
            except OSError:
                continue
    return found


async def build_snapshot(
    conf_dir: str,
    engine: CNIEngine,
    versions: VersionCache,
    *,
    default_name: str | None,
    generation: int,
    previous: ConfigSnapshot | None = None,
) -> ConfigSnapshot:
    """Load and validate the configuration directory into a new snapshot.

    The default network is ``default_name`` when given (and usable), otherwise the first usable
    network in file order. A file that was usable in ``previous`` and now fails to load (a
    half-written update, say) keeps its last good version, until it is fixed or removed.
    """
    directory: ConfigDirectory = await load_config_dir(conf_dir)
    plugins = await anyio.to_thread.run_sync(_plugin_inventory, engine.bin_dirs)
    # Later files that reuse a network name are validated too: if the first one turns out
    # unusable, the first usable one of that name is used (as ocicni does).
    candidates = [*directory.networks, *directory.shadowed]
    invalid: list[tuple[str, CNIError]] = list(directory.invalid)
    kept: set[str] = set()
    if previous is not None:
        names = {n.name for n in candidates}
        last_good = {n.path: n for n in previous.networks if n.path}
        for path, _error in directory.invalid:
            network = last_good.get(path)
            if network is not None and network.name not in names:
                candidates.append(network)
                names.add(network.name)
                kept.add(path)
    candidates.sort(key=lambda n: os.fsencode(n.path or ""))

    async def check(_: int, network: NetworkConfigList) -> None:
        await engine.validate_network_list(network, version_info=versions.version_info)

    failures = await errors_by_index(candidates, check)

    usable: list[NetworkConfigList] = []
    taken: set[str] = set()
    shadowed = {id(n) for n in directory.shadowed}
    promoted: set[str] = set()  # later copies of a name now in use: no longer "duplicates"
    for index, network in enumerate(candidates):
        error = failures.get(index)
        if network.name in taken:
            continue  # a later copy: its "duplicate" error is recorded already
        if error is None:
            usable.append(network)
            taken.add(network.name)
            if id(network) in shadowed:
                promoted.add(network.path or "")
        elif id(network) not in shadowed:
            invalid.append((network.path or conf_dir, error))
    invalid = [item for item in invalid if item[0] not in promoted]
    invalid.sort(key=lambda item: os.fsencode(item[0]))
    by_name = {n.name: n for n in usable}
    default = by_name.get(default_name) if default_name else (usable[0] if usable else None)
    for path, error in invalid:
        logger.debug("CNI configuration %s is not usable: %s", path, error)
    return ConfigSnapshot(
        conf_dir=conf_dir,
        networks=tuple(usable),
        invalid=tuple(invalid),
        default=default,
        generation=generation,
        plugins=plugins,
        kept_last_good=frozenset(kept),
        sub_directories=directory.sub_directories,
        _by_name=by_name,
    )
