"""Observers: what a runtime can see of the library's operations, plugin runs and reloads.

An [`Observer`][cni_async.Observer] is handed to [`CNIPlugin`][cni_async.CNIPlugin] (or
[`CNIEngine`][cni_async.libcni.CNIEngine]) and told about every pod operation, every plugin process, every
rollback, every retry and every reload. [`Metrics`][cni_async.Metrics] is one that counts and times everything in
memory; [`OpenTelemetryObserver`][cni_async.OpenTelemetryObserver] turns the same calls into spans.
Observers run in the event loop's thread, inside the operation: they must not block.

The plugin-run hook is the engine's (``_libcni.observing``); the rest are the pod layer's and
the configuration's, added here.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import msgspec

from .._confdir.snapshot import ConfigSnapshot
from .._errors import CNIError
from .._libcni.observing import NULL_CONTEXT, PluginRunObserver, PluginRunObservers

__all__ = ["Observer", "Observers", "OperationInfo"]


class OperationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One call of the pod API, as observers see it (never the pod's annotations or args).

    :ivar kind: the method: ``"set_up_pod"``, ``"tear_down_pod"``, ``"get_pod_network_status"``,
        ``"status"`` or ``"gc"``
    :ivar pod_namespace: the pod's namespace (empty for ``status`` and ``gc``)
    :ivar pod_name: the pod's name (empty for ``status`` and ``gc``)
    :ivar container_id: the pod's sandbox ID (empty for ``status`` and ``gc``)
    :ivar networks: the networks the caller asked for by name (empty: the default network, or
        for teardown whatever the cache holds)
    """

    kind: str
    pod_namespace: str = ""
    pod_name: str = ""
    container_id: str = ""
    networks: tuple[str, ...] = ()


class Observer(PluginRunObserver):
    """Base class of observers; override what you need, the defaults do nothing.

    The two context-manager methods wrap their operation: the block raises whatever the
    operation raised (a [`CNIError`][cni_async.CNIError], or the backend's cancellation exception
    when it was cancelled), so a ``@contextmanager`` generator sees it with ``try``/``except``
    around its ``yield``. An observer cannot swallow an exception or change a result, and an
    exception an observer raises itself is logged (``cni_async.observe``) and otherwise ignored.
    """

    def operation(self, info: OperationInfo) -> AbstractContextManager[object]:
        """Wraps one call of the pod API, from its start (before the pod lock) to its end."""
        return NULL_CONTEXT

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        """A failed or cancelled set-up detached ``networks`` again; ``errors`` are the DELs
        that failed (empty when the rollback was clean)."""

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        """Attempt number ``attempt`` (``1`` for the first) of the operation ``info`` failed
        with ``error``, a plugin's "try again later" (CNI code 11, perhaps several networks'),
        and the operation will run again after ``delay`` seconds, as the plugin's
        [`RetryPolicy`][cni_async.RetryPolicy] says. Called inside the operation, before the
        wait; the operation's own end is still reported once, when it ends."""

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        """A new configuration generation is in use (the first load included)."""


class Observers(PluginRunObservers[Observer]):
    """The observers of one plugin, called in order, each guarded."""

    __slots__ = ()

    def operation(self, info: OperationInfo) -> AbstractContextManager[object]:
        if not self._observers:
            return NULL_CONTEXT
        return self._wrap(lambda o: o.operation(info), info.kind)

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        self._notify(lambda o: o.rolled_back(info, networks, errors), "a rollback")

    def retrying(self, info: OperationInfo, attempt: int, delay: float, error: CNIError) -> None:
        self._notify(lambda o: o.retrying(info, attempt, delay, error), "a retry")

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        self._notify(lambda o: o.reloaded(snapshot), "a reload")
