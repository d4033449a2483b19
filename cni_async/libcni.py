"""libcni's layer: CNI verbs over plugin chains, configuration files and results.

What a runtime needs that manages attachments itself, as libcni's users do: [`CNIEngine`]
[cni_async.libcni.CNIEngine] runs ADD, CHECK, DEL, STATUS, GC and VERSION over one network's
plugin chain with a [`RuntimeConf`][cni_async.libcni.RuntimeConf] per call, and keeps libcni's
cache. The pod API in [`cni_async`](index.md) is built on it. Every name here is also importable
from ``cni_async`` itself, as before this namespace existed.
"""

from __future__ import annotations

from ._libcni.cache import DEFAULT_CACHE_DIR as DEFAULT_CACHE_DIR
from ._libcni.cache import CacheEntry as CacheEntry
from ._libcni.confload import ConfigDirectory as ConfigDirectory
from ._libcni.confload import load_config_dir as load_config_dir
from ._libcni.confload import load_config_file as load_config_file
from ._libcni.confload import load_conflist_file as load_conflist_file
from ._libcni.engine import CNIEngine as CNIEngine
from ._libcni.exec import PluginExecutor as PluginExecutor
from ._libcni.exec import SpawnExecutor as SpawnExecutor
from ._libcni.observing import PluginRunObserver as PluginRunObserver
from ._libcni.runtime import PluginInfo as PluginInfo
from ._libcni.runtime import RuntimeConf as RuntimeConf
from ._names import show_as as _show_as
from ._spec.netconf import NetworkConfigList as NetworkConfigList
from ._spec.netconf import PluginConfig as PluginConfig
from ._spec.netconf import conflist_from_plugin as conflist_from_plugin
from ._spec.netconf import parse_conflist as parse_conflist
from ._spec.netconf import parse_plugin_config as parse_plugin_config
from ._spec.results import DNS as DNS
from ._spec.results import Interface as Interface
from ._spec.results import Interface040 as Interface040
from ._spec.results import IPConfig as IPConfig
from ._spec.results import IPConfig020 as IPConfig020
from ._spec.results import IPConfig040 as IPConfig040
from ._spec.results import Result as Result
from ._spec.results import Result020 as Result020
from ._spec.results import Result040 as Result040
from ._spec.results import Result100 as Result100
from ._spec.results import Route as Route
from ._spec.results import convert_result as convert_result
from ._spec.results import parse_result as parse_result
from ._spec.versions import ALL_VERSIONS as ALL_VERSIONS
from ._spec.versions import CURRENT_VERSION as CURRENT_VERSION

__all__ = (
    # the protocol engine
    "CNIEngine",
    "RuntimeConf",
    "PluginInfo",
    "PluginExecutor",
    "SpawnExecutor",
    "PluginRunObserver",
    "CacheEntry",
    "DEFAULT_CACHE_DIR",
    # configuration files
    "ConfigDirectory",
    "NetworkConfigList",
    "PluginConfig",
    "conflist_from_plugin",
    "load_config_dir",
    "load_config_file",
    "load_conflist_file",
    "parse_conflist",
    "parse_plugin_config",
    # results and versions
    "Result",
    "Result020",
    "Result040",
    "Result100",
    "Interface",
    "Interface040",
    "IPConfig",
    "IPConfig020",
    "IPConfig040",
    "Route",
    "DNS",
    "convert_result",
    "parse_result",
    "ALL_VERSIONS",
    "CURRENT_VERSION",
)

_show_as(__name__, globals(), __all__)
