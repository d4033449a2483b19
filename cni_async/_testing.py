"""Internals the project's own tests (and benchmarks) reach, re-exported from one place.

Not public API: nothing here is promised to callers, and names come and go with the tests that
need them. Tests import the public API from ``cni_async`` and, where they must test an internal
piece on its own (a decoder, the cache's file format, the netlink helpers), from this module
only (modules patched by a test are here as ``*_module``), so that moving a module inside the package changes this file and no test.
"""

from __future__ import annotations

from ._confdir import watch as watch_module
from ._confdir.build import VersionCache, build_snapshot
from ._confdir.events import EventHub
from ._fanout import for_each
from ._json import decode_like_go
from ._libcni import confload as confload_module
from ._libcni import engine as engine_module
from ._libcni import exec as exec_module
from ._libcni import freeing as freeing_module
from ._libcni import groupcommit as groupcommit_module
from ._libcni import native as native_module
from ._libcni import spawner as spawner_module
from ._libcni.cache import ResultCache, decode_entry
from ._libcni.exec import cni_env, find_plugin, plugin_failure
from ._libcni.freeing import unlink_keeping
from ._libcni.groupcommit import GroupCommit
from ._pod.locks import SharedGate
from ._pod.models import FrozenDict, capability_args
from ._pod.netns import _socket_in as socket_in
from ._pod.netns import host_namespace, loopback_is_up, loopback_up_blocking
from ._pod.planning import assign_ifnames, plan_networks, runtime_conf
from ._pod.retry import is_try_again_later
from ._spec.netconf import gc_stdin, plugin_stdin, status_stdin
from ._spec.results import encode_result, result_from_builtins, result_to_builtins
from ._spec.versions import parse_version

__all__ = [
    "EventHub",
    "FrozenDict",
    "GroupCommit",
    "ResultCache",
    "SharedGate",
    "VersionCache",
    "assign_ifnames",
    "build_snapshot",
    "capability_args",
    "cni_env",
    "confload_module",
    "decode_entry",
    "decode_like_go",
    "encode_result",
    "engine_module",
    "exec_module",
    "find_plugin",
    "for_each",
    "freeing_module",
    "gc_stdin",
    "groupcommit_module",
    "host_namespace",
    "is_try_again_later",
    "loopback_is_up",
    "loopback_up_blocking",
    "native_module",
    "parse_version",
    "plan_networks",
    "plugin_failure",
    "plugin_stdin",
    "result_from_builtins",
    "result_to_builtins",
    "runtime_conf",
    "socket_in",
    "spawner_module",
    "status_stdin",
    "unlink_keeping",
    "watch_module",
]
