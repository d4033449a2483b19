"""The engine's hook: observers of plugin processes, called so that they cannot break a run.

[`Observer`][cni_async.Observer] (the pod layer's) extends ``PluginRunObserver``; an engine used
on its own takes either. Observers run in the event loop's thread, inside the operation: they
must not block.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from types import TracebackType
from typing import Final, Generic, TypeVar

import msgspec

__all__ = [
    "NULL_CONTEXT",
    "PluginRunInfo",
    "PluginRunObserver",
    "PluginRunObservers",
    "is_cancellation",
    "observed_env",
]

logger = logging.getLogger("cni_async.observe")


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


NULL_CONTEXT: Final[AbstractContextManager[object]] = nullcontext()


class PluginRunObserver:
    """Base class of what an engine tells about plugin processes; the default does nothing.

    [`Observer`][cni_async.Observer] extends it with the pod layer's hooks.
    """

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
        return NULL_CONTEXT


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


_O = TypeVar("_O", bound=PluginRunObserver)


class PluginRunObservers(Generic[_O]):
    """Observers called in order, each guarded: one that raises is logged and skipped."""

    __slots__ = ("_observers",)

    def __init__(self, observers: Sequence[_O] = ()) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def plugin_run(
        self, info: PluginRunInfo, env: MutableMapping[str, str]
    ) -> AbstractContextManager[object]:
        if not self._observers:
            return NULL_CONTEXT
        return self._wrap(lambda o: o.plugin_run(info, env), f"{info.verb} {info.plugin}")

    @contextmanager
    def _wrap(
        self, start: Callable[[_O], AbstractContextManager[object]], name: str
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

    def _notify(self, call: Callable[[_O], None], what: str) -> None:
        for observer in self._observers:
            try:
                call(observer)
            except Exception:
                logger.exception("observer %s failed on %s", type(observer).__name__, what)
