"""Observers: what a runtime can see of the library's operations, plugin runs and reloads.

An [`Observer`][cni_async.Observer] is handed to [`CNIPlugin`][cni_async.CNIPlugin] (or
[`CNIEngine`][cni_async.CNIEngine]) and told about every pod operation, every plugin process, every
rollback and every reload. [`Metrics`][cni_async.Metrics] is one that counts and times everything in
memory; [`OpenTelemetryObserver`][cni_async.OpenTelemetryObserver] turns the same calls into spans.
Observers run in the event loop's thread, inside the operation: they must not block.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from ._errors import CNIError
    from ._models import PodNetwork
    from ._snapshot import ConfigSnapshot

__all__ = [
    "Observer",
    "Observers",
    "OperationInfo",
    "PluginRunInfo",
    "is_cancellation",
    "observed_env",
    "operation_info",
]

logger = logging.getLogger("cni_async.observe")


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


def operation_info(kind: str, pod: PodNetwork | None = None) -> OperationInfo:
    """What observers are told of a call of ``kind`` on ``pod``."""
    if pod is None:
        return OperationInfo(kind=kind)
    return OperationInfo(
        kind=kind,
        pod_namespace=pod.namespace,
        pod_name=pod.name,
        container_id=pod.id,
        networks=tuple(n.name for n in pod.networks),
    )


class PluginRunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin process about to run.

    :ivar verb: ``CNI_COMMAND``: ``"ADD"``, ``"CHECK"``, ``"DEL"``, ``"STATUS"``, ``"GC"`` or
        ``"VERSION"``
    :ivar plugin: the plugin's type (its binary's name)
    :ivar network: the network whose chain it belongs to (``None`` for VERSION)
    :ivar container_id: ``CNI_CONTAINERID`` (``None`` for VERSION, STATUS and GC)
    :ivar ifname: ``CNI_IFNAME`` (``None`` for VERSION, STATUS and GC)
    """

    verb: str
    plugin: str
    network: str | None = None
    container_id: str | None = None
    ifname: str | None = None


class Observer:
    """Base class of observers; override what you need, the defaults do nothing.

    The two context-manager methods wrap their operation: the block raises whatever the
    operation raised (a [`CNIError`][cni_async.CNIError], or the backend's cancellation exception
    when it was cancelled), so a ``@contextmanager`` generator sees it with ``try``/``except``
    around its ``yield``. An observer cannot swallow an exception or change a result, and an
    exception an observer raises itself is logged (``cni_async.observe``) and otherwise ignored.
    """

    def operation(self, info: OperationInfo) -> AbstractContextManager[object]:
        """Wraps one call of the pod API, from its start (before the pod lock) to its end."""
        return _NULL

    def plugin_run(
        self, info: PluginRunInfo, env: MutableMapping[str, str]
    ) -> AbstractContextManager[object]:
        """Wraps one plugin process, from its lookup to its exit (not the wait for a process
        slot under ``max_concurrent_execs``).

        ``env`` is the environment the plugin will get; an observer may add variables to it
        (this is how trace context reaches plugins as ``TRACEPARENT``) or change a variable
        that is not a ``CNI_`` one. ``CNI_`` variables cannot be added or changed, and a
        variable the plugin could not be given (not a string, ``=`` or NUL in its name, NUL in
        its value) is dropped with a warning.
        """
        return _NULL

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        """A failed or cancelled set-up detached ``networks`` again; ``errors`` are the DELs
        that failed (empty when the rollback was clean)."""

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        """A new configuration generation is in use (the first load included)."""


_NULL: Final[AbstractContextManager[object]] = nullcontext()


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's or trio's cancellation (works outside an event loop too)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


def observed_env(env: Mapping[str, str], observed: Mapping[str, object]) -> dict[str, str]:
    """``env`` with what observers added to, or changed in, their copy ``observed``.

    The ``CNI_`` variables are ``env``'s, whatever observers did; a variable ``posix_spawn``
    could not pass (not a string, ``=`` or NUL in its name, NUL in its value, text that has no
    bytes, such as a lone surrogate) is dropped and logged.
    """
    result = dict(env)
    for key, value in observed.items():
        if isinstance(key, str) and key.startswith("CNI_"):
            continue
        if (
            isinstance(key, str)
            and isinstance(value, str)
            and key
            and "=" not in key
            and "\0" not in key
            and "\0" not in value
            and _encodable(key)
            and _encodable(value)
        ):
            result[key] = value
        else:
            logger.warning("an observer set an unusable plugin variable %r; dropped", key)
    return result


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


class _Guarded(AbstractContextManager[object]):
    """An observer's context manager that can neither raise nor swallow an exception."""

    __slots__ = ("_cm", "_entered", "_name")

    def __init__(self, cm: AbstractContextManager[object], name: str) -> None:
        self._cm = cm
        self._name = name
        self._entered = False

    def __enter__(self) -> object:
        try:
            self._cm.__enter__()
            self._entered = True
        except Exception:
            logger.exception("observer %s failed entering %s", type(self._cm).__name__, self._name)
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._entered:
            return
        try:
            self._cm.__exit__(exc_type, exc, tb)
        except BaseException as raised:
            if raised is exc:  # a generator context manager re-raising what it was given
                return
            if not isinstance(raised, Exception):
                raise
            logger.exception("observer failed leaving %s", self._name)


class Observers:
    """The observers of one engine or plugin, called in order, each guarded."""

    __slots__ = ("_observers",)

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def operation(self, info: OperationInfo) -> AbstractContextManager[object]:
        if not self._observers:
            return _NULL
        return self._wrap(lambda o: o.operation(info), info.kind)

    def plugin_run(
        self, info: PluginRunInfo, env: MutableMapping[str, str]
    ) -> AbstractContextManager[object]:
        if not self._observers:
            return _NULL
        return self._wrap(lambda o: o.plugin_run(info, env), f"{info.verb} {info.plugin}")

    @contextmanager
    def _wrap(
        self, start: Callable[[Observer], AbstractContextManager[object]], name: str
    ) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._observers:
                try:
                    cm = start(observer)
                except Exception:
                    logger.exception(
                        "observer %s failed starting %s", type(observer).__name__, name
                    )
                    continue
                stack.enter_context(_Guarded(cm, name))
            yield

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        self._notify(lambda o: o.rolled_back(info, networks, errors), "a rollback")

    def reloaded(self, snapshot: ConfigSnapshot) -> None:
        self._notify(lambda o: o.reloaded(snapshot), "a reload")

    def _notify(self, call: Callable[[Observer], None], what: str) -> None:
        for observer in self._observers:
            try:
                call(observer)
            except Exception:
                logger.exception("observer %s failed on %s", type(observer).__name__, what)
