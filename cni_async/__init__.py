"""cni_async: put pods on the network through CNI plugins, from asyncio or trio (via anyio).

Layers, bottom up: ``_specversion`` (CNI versions), ``_results`` (typed results of every spec
version and conversion between them), ``_config`` (network configuration files), ``_exec``
(running one plugin process), ``_cache`` (libcni's on-disk cache, written through
``_groupcommit``'s batched durable writes), ``_engine`` (plugin chains
for every CNI verb, libcni's role); then the pod API on top: ``_models`` (PodNetwork and
friends), ``_snapshot`` (validated configuration generations), ``_events`` and ``_watch``
(configuration events; inotify as an async iterator), ``_locks`` (per-pod locks), ``_netns``
(netlink inside a pod's namespace), ``_observe``, ``_metrics`` and ``_otel`` (observers of
operations, plugin runs and reloads), ``_plugin`` (CNIPlugin, ocicni's role) and ``_blocking``
(the same for code without an event loop).
Everything public is re-exported here.
"""

from __future__ import annotations

from contextlib import suppress as _suppress

from ._blocking import BlockingCNIPlugin as BlockingCNIPlugin
from ._cache import DEFAULT_CACHE_DIR as DEFAULT_CACHE_DIR
from ._cache import CacheEntry as CacheEntry
from ._config import NetworkConfigList as NetworkConfigList
from ._config import PluginConfig as PluginConfig
from ._config import conflist_from_plugin as conflist_from_plugin
from ._config import parse_conflist as parse_conflist
from ._config import parse_plugin_config as parse_plugin_config
from ._confload import ConfigDirectory as ConfigDirectory
from ._confload import load_config_dir as load_config_dir
from ._confload import load_config_file as load_config_file
from ._confload import load_conflist_file as load_conflist_file
from ._engine import CNIEngine as CNIEngine
from ._errors import CacheError as CacheError
from ._errors import CheckNotSupported as CheckNotSupported
from ._errors import CNIError as CNIError
from ._errors import ConfigError as ConfigError
from ._errors import ContainerUnknown as ContainerUnknown
from ._errors import IncompatibleCNIVersion as IncompatibleCNIVersion
from ._errors import InvalidArgument as InvalidArgument
from ._errors import LimitedConnectivity as LimitedConnectivity
from ._errors import MultipleErrors as MultipleErrors
from ._errors import NamespaceError as NamespaceError
from ._errors import NetworkNotFound as NetworkNotFound
from ._errors import PluginError as PluginError
from ._errors import PluginExecFailed as PluginExecFailed
from ._errors import PluginNotAvailable as PluginNotAvailable
from ._errors import PluginNotFound as PluginNotFound
from ._errors import PluginTimeout as PluginTimeout
from ._errors import PodNetworkError as PodNetworkError
from ._errors import ProtocolError as ProtocolError
from ._errors import TryAgainLater as TryAgainLater
from ._errors import VersionError as VersionError
from ._events import ConfigEvent as ConfigEvent
from ._events import DefaultNetworkChanged as DefaultNetworkChanged
from ._events import EventSubscription as EventSubscription
from ._events import FileInvalid as FileInvalid
from ._events import NetworkAdded as NetworkAdded
from ._events import NetworkChanged as NetworkChanged
from ._events import NetworkRemoved as NetworkRemoved
from ._events import NotReady as NotReady
from ._events import PluginAppeared as PluginAppeared
from ._events import PluginRemoved as PluginRemoved
from ._events import Ready as Ready
from ._events import Reloaded as Reloaded
from ._events import WatcherDegraded as WatcherDegraded
from ._exec import PluginExecutor as PluginExecutor
from ._exec import SpawnExecutor as SpawnExecutor
from ._metrics import DEFAULT_BUCKETS as DEFAULT_BUCKETS
from ._metrics import ErrorCount as ErrorCount
from ._metrics import Histogram as Histogram
from ._metrics import Metrics as Metrics
from ._metrics import MetricsSnapshot as MetricsSnapshot
from ._metrics import OperationStats as OperationStats
from ._metrics import PluginRunStats as PluginRunStats
from ._models import BandwidthConfig as BandwidthConfig
from ._models import IpRange as IpRange
from ._models import NetAttachment as NetAttachment
from ._models import NetResult as NetResult
from ._models import PodNetwork as PodNetwork
from ._models import PortMapping as PortMapping
from ._models import RuntimeConfig as RuntimeConfig
from ._namespaces import InterfaceState as InterfaceState
from ._namespaces import Namespaces as Namespaces
from ._namespaces import NetlinkNamespaces as NetlinkNamespaces
from ._observe import Observer as Observer
from ._observe import OperationInfo as OperationInfo
from ._observe import PluginRunInfo as PluginRunInfo
from ._otel import OpenTelemetryObserver as OpenTelemetryObserver
from ._otel_metrics import OpenTelemetryMetrics as OpenTelemetryMetrics
from ._plugin import DEFAULT_BIN_DIR as DEFAULT_BIN_DIR
from ._plugin import DEFAULT_CONF_DIR as DEFAULT_CONF_DIR
from ._plugin import DEFAULT_INTERFACE_NAME as DEFAULT_INTERFACE_NAME
from ._plugin import CNIPlugin as CNIPlugin
from ._prometheus import PrometheusCollector as PrometheusCollector
from ._results import DNS as DNS
from ._results import Interface as Interface
from ._results import Interface040 as Interface040
from ._results import IPConfig as IPConfig
from ._results import IPConfig020 as IPConfig020
from ._results import IPConfig040 as IPConfig040
from ._results import Result as Result
from ._results import Result020 as Result020
from ._results import Result040 as Result040
from ._results import Result100 as Result100
from ._results import Route as Route
from ._results import convert_result as convert_result
from ._results import parse_result as parse_result
from ._runtime import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from ._runtime import PluginInfo as PluginInfo
from ._runtime import RuntimeConf as RuntimeConf
from ._snapshot import ConfigSnapshot as ConfigSnapshot
from ._specversion import ALL_VERSIONS as ALL_VERSIONS
from ._specversion import CURRENT_VERSION as CURRENT_VERSION
from ._version import __version__ as __version__
from ._watch import ConfigWatcher as ConfigWatcher
from ._watch import watch_config as watch_config

__all__ = (
    # the pod API (ocicni's)
    "CNIPlugin",
    "BlockingCNIPlugin",
    "PodNetwork",
    "NetAttachment",
    "RuntimeConfig",
    "PortMapping",
    "IpRange",
    "BandwidthConfig",
    "NetResult",
    "ConfigSnapshot",
    "DEFAULT_BIN_DIR",
    "DEFAULT_CONF_DIR",
    "DEFAULT_INTERFACE_NAME",
    "DEFAULT_TIMEOUTS",
    "Namespaces",
    "NetlinkNamespaces",
    "InterfaceState",
    # configuration events
    "watch_config",
    "ConfigWatcher",
    "EventSubscription",
    "ConfigEvent",
    "NetworkAdded",
    "NetworkChanged",
    "NetworkRemoved",
    "DefaultNetworkChanged",
    "FileInvalid",
    "PluginAppeared",
    "PluginRemoved",
    "WatcherDegraded",
    "Ready",
    "NotReady",
    "Reloaded",
    # observability
    "Observer",
    "OperationInfo",
    "PluginRunInfo",
    "Metrics",
    "MetricsSnapshot",
    "OperationStats",
    "PluginRunStats",
    "ErrorCount",
    "Histogram",
    "DEFAULT_BUCKETS",
    "OpenTelemetryObserver",
    "OpenTelemetryMetrics",
    "PrometheusCollector",
    # the protocol engine
    "CNIEngine",
    "RuntimeConf",
    "PluginInfo",
    "PluginExecutor",
    "SpawnExecutor",
    "CacheEntry",
    "DEFAULT_CACHE_DIR",
    # configuration
    "ConfigDirectory",
    "NetworkConfigList",
    "PluginConfig",
    "conflist_from_plugin",
    "load_config_dir",
    "load_config_file",
    "load_conflist_file",
    "parse_conflist",
    "parse_plugin_config",
    # results
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
    # errors
    "CNIError",
    "CacheError",
    "CheckNotSupported",
    "ConfigError",
    "ContainerUnknown",
    "IncompatibleCNIVersion",
    "InvalidArgument",
    "LimitedConnectivity",
    "MultipleErrors",
    "NamespaceError",
    "NetworkNotFound",
    "PluginError",
    "PluginExecFailed",
    "PluginNotAvailable",
    "PluginNotFound",
    "PluginTimeout",
    "PodNetworkError",
    "ProtocolError",
    "TryAgainLater",
    "VersionError",
    "__version__",
)

# Show public objects as cni_async.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("cni_async._"):
        with _suppress(AttributeError, TypeError):
            _obj.__module__ = __name__
del _name, _obj, _suppress
