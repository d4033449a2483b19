"""cni_async: put pods on the network through CNI plugins, from asyncio or trio (via anyio).

Everything public is re-exported here: the pod API (``CNIPlugin``, ocicni's role), configuration
events, observers and errors; libcni's layer (``CNIEngine``, configuration files, results) is
documented under ``cni_async.libcni`` and importable from here too. The private
sub-packages are layers, bottom up: ``_spec`` (the CNI specification as data), ``_libcni``
(plugin chains for every verb, the cache), ``_confdir`` (configuration snapshots, events, the
watcher and their owner), ``_observers`` and ``_pod`` (pods on their networks); see
``docs/architecture.md``.
"""

from __future__ import annotations

from ._confdir.events import ConfigEvent as ConfigEvent
from ._confdir.events import DefaultNetworkChanged as DefaultNetworkChanged
from ._confdir.events import EventSubscription as EventSubscription
from ._confdir.events import FileInvalid as FileInvalid
from ._confdir.events import NetworkAdded as NetworkAdded
from ._confdir.events import NetworkChanged as NetworkChanged
from ._confdir.events import NetworkRemoved as NetworkRemoved
from ._confdir.events import NotReady as NotReady
from ._confdir.events import PluginAppeared as PluginAppeared
from ._confdir.events import PluginRemoved as PluginRemoved
from ._confdir.events import Ready as Ready
from ._confdir.events import Reloaded as Reloaded
from ._confdir.events import WatcherDegraded as WatcherDegraded
from ._confdir.snapshot import ConfigSnapshot as ConfigSnapshot
from ._confdir.source import watch_config as watch_config
from ._confdir.watch import ConfigWatcher as ConfigWatcher
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
from ._libcni.observing import PluginRunInfo as PluginRunInfo
from ._libcni.runtime import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from ._names import show_as as _show_as
from ._observers.metrics import DEFAULT_BUCKETS as DEFAULT_BUCKETS
from ._observers.metrics import ErrorCount as ErrorCount
from ._observers.metrics import Histogram as Histogram
from ._observers.metrics import Metrics as Metrics
from ._observers.metrics import MetricsSnapshot as MetricsSnapshot
from ._observers.metrics import OperationStats as OperationStats
from ._observers.metrics import PluginRunStats as PluginRunStats
from ._observers.observer import Observer as Observer
from ._observers.observer import OperationInfo as OperationInfo
from ._observers.otel import OpenTelemetryObserver as OpenTelemetryObserver
from ._observers.otel_metrics import OpenTelemetryMetrics as OpenTelemetryMetrics
from ._observers.prometheus import PrometheusCollector as PrometheusCollector
from ._pod.blocking import BlockingCNIPlugin as BlockingCNIPlugin
from ._pod.models import BandwidthConfig as BandwidthConfig
from ._pod.models import IpRange as IpRange
from ._pod.models import NetAttachment as NetAttachment
from ._pod.models import NetResult as NetResult
from ._pod.models import PodNetwork as PodNetwork
from ._pod.models import PortMapping as PortMapping
from ._pod.models import RuntimeConfig as RuntimeConfig
from ._pod.namespaces import InterfaceState as InterfaceState
from ._pod.namespaces import Namespaces as Namespaces
from ._pod.namespaces import NetlinkNamespaces as NetlinkNamespaces
from ._pod.plugin import DEFAULT_BIN_DIR as DEFAULT_BIN_DIR
from ._pod.plugin import DEFAULT_CONF_DIR as DEFAULT_CONF_DIR
from ._pod.plugin import DEFAULT_INTERFACE_NAME as DEFAULT_INTERFACE_NAME
from ._pod.plugin import CNIPlugin as CNIPlugin
from ._pod.retry import RetryPolicy as RetryPolicy
from ._version import __version__ as __version__

# libcni's layer, kept importable from here too (documented under cni_async.libcni)
from .libcni import ALL_VERSIONS as ALL_VERSIONS
from .libcni import CURRENT_VERSION as CURRENT_VERSION
from .libcni import DEFAULT_CACHE_DIR as DEFAULT_CACHE_DIR
from .libcni import DNS as DNS
from .libcni import CacheEntry as CacheEntry
from .libcni import CNIEngine as CNIEngine
from .libcni import ConfigDirectory as ConfigDirectory
from .libcni import Interface as Interface
from .libcni import Interface040 as Interface040
from .libcni import IPConfig as IPConfig
from .libcni import IPConfig020 as IPConfig020
from .libcni import IPConfig040 as IPConfig040
from .libcni import NetworkConfigList as NetworkConfigList
from .libcni import PluginConfig as PluginConfig
from .libcni import PluginExecutor as PluginExecutor
from .libcni import PluginInfo as PluginInfo
from .libcni import PluginRunObserver as PluginRunObserver
from .libcni import Result as Result
from .libcni import Result020 as Result020
from .libcni import Result040 as Result040
from .libcni import Result100 as Result100
from .libcni import Route as Route
from .libcni import RuntimeConf as RuntimeConf
from .libcni import SpawnExecutor as SpawnExecutor
from .libcni import conflist_from_plugin as conflist_from_plugin
from .libcni import convert_result as convert_result
from .libcni import load_config_dir as load_config_dir
from .libcni import load_config_file as load_config_file
from .libcni import load_conflist_file as load_conflist_file
from .libcni import parse_conflist as parse_conflist
from .libcni import parse_plugin_config as parse_plugin_config
from .libcni import parse_result as parse_result

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
    "RetryPolicy",
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

_show_as(__name__, globals(), __all__)
