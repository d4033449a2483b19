"""Typed configuration events, and the diff of two snapshots that produces them.

Events say what changed in terms a runtime cares about: a network appeared, changed or went
away, the default network moved, a file is invalid (and whether its last good version is still
in use), a plugin binary appeared or went away, watching degraded to polling, and readiness.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Self, TypeAlias

import anyio
import msgspec

from .._errors import CNIError
from .snapshot import ConfigSnapshot

__all__ = [
    "ConfigEvent",
    "DefaultNetworkChanged",
    "FileInvalid",
    "NetworkAdded",
    "NetworkChanged",
    "NetworkRemoved",
    "NotReady",
    "PluginAppeared",
    "PluginRemoved",
    "Ready",
    "Reloaded",
    "WatcherDegraded",
    "diff_snapshots",
]

logger = logging.getLogger("cni_async.watch")


class NetworkAdded(msgspec.Struct, frozen=True):
    """A network became usable. ``path`` is its configuration file."""

    name: str
    path: str | None


class NetworkChanged(msgspec.Struct, frozen=True):
    """A usable network's configuration changed; new operations use the new one."""

    name: str
    path: str | None


class NetworkRemoved(msgspec.Struct, frozen=True):
    """A network is no longer usable (its file was removed, or it failed validation)."""

    name: str
    path: str | None


class DefaultNetworkChanged(msgspec.Struct, frozen=True):
    """The default network is now ``current`` (``None``: there is none)."""

    previous: str | None
    current: str | None


class FileInvalid(msgspec.Struct, frozen=True):
    """A configuration file cannot be used.

    :ivar kept_last_good: the file's last good version is still in use (a half-written update,
        say); it stays in use until the file is fixed or removed
    """

    path: str
    reason: str
    error: CNIError
    kept_last_good: bool = False


class PluginAppeared(msgspec.Struct, frozen=True):
    """A plugin binary appeared in a plugin directory."""

    plugin: str
    path: str


class PluginRemoved(msgspec.Struct, frozen=True):
    """A plugin binary went away from the plugin directories."""

    plugin: str
    path: str


class WatcherDegraded(msgspec.Struct, frozen=True):
    """inotify is unavailable or failed; changes are now found by polling."""

    reason: str
    poll_interval: float


class Ready(msgspec.Struct, frozen=True):
    """A default network is available: pods can be set up."""

    default_network: str


class NotReady(msgspec.Struct, frozen=True):
    """No default network is available; ``reason`` says what is missing and where."""

    reason: str


class Reloaded(msgspec.Struct, frozen=True):
    """A new configuration snapshot is in use (sent once per reload, after the other events)."""

    generation: int


ConfigEvent: TypeAlias = (
    NetworkAdded
    | NetworkChanged
    | NetworkRemoved
    | DefaultNetworkChanged
    | FileInvalid
    | PluginAppeared
    | PluginRemoved
    | WatcherDegraded
    | Ready
    | NotReady
    | Reloaded
)


def _readiness(snapshot: ConfigSnapshot, default_name: str | None) -> Ready | NotReady:
    if snapshot.default is not None:
        return Ready(snapshot.default.name)
    return NotReady(snapshot.missing_default(default_name).message)


def diff_snapshots(
    old: ConfigSnapshot | None, new: ConfigSnapshot, *, default_name: str | None = None
) -> list[ConfigEvent]:
    """The events that lead from ``old`` to ``new`` (from nothing, when ``old`` is ``None``)."""
    events: list[ConfigEvent] = []
    old_networks = {n.name: n for n in old.networks} if old is not None else {}
    new_networks = {n.name: n for n in new.networks}
    for name, network in old_networks.items():
        if name not in new_networks:
            events.append(NetworkRemoved(name, network.path))
    for name, network in new_networks.items():
        before = old_networks.get(name)
        if before is None:
            events.append(NetworkAdded(name, network.path))
        elif before != network:
            events.append(NetworkChanged(name, network.path))

    old_invalid = dict(old.invalid) if old is not None else {}
    for path, error in new.invalid:
        previous = old_invalid.get(path)
        if previous is None or previous.message != error.message:
            events.append(
                FileInvalid(path, error.message, error, kept_last_good=path in new.kept_last_good)
            )

    old_plugins = old.plugins if old is not None else {}
    if old is not None:
        for plugin, path in new.plugins.items():
            if old_plugins.get(plugin) != path:
                events.append(PluginAppeared(plugin, path))
        for plugin, path in old_plugins.items():
            if plugin not in new.plugins:
                events.append(PluginRemoved(plugin, path))

    old_default = old.default.name if old is not None and old.default else None
    new_default = new.default.name if new.default else None
    if old is None or old_default != new_default:
        events.append(DefaultNetworkChanged(old_default, new_default))
    readiness = _readiness(new, default_name)
    if old is None or readiness != _readiness(old, default_name):
        events.append(readiness)
    events.append(Reloaded(new.generation))
    return events


class EventSubscription:
    """One subscriber's events: an async iterator, and an async context manager that ends it.

    Iteration ends when the subscription or its [`CNIPlugin`][cni_async.CNIPlugin] is closed.
    """

    def __init__(self, hub: EventHub, capacity: int) -> None:
        self._hub = hub
        self._send, self._receive = anyio.create_memory_object_stream[ConfigEvent](capacity)
        self._lagging = False  # events were dropped since the last one that got through

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ConfigEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving events. Idempotent."""
        self._hub.unsubscribe(self)
        self._send.close()
        self._receive.close()
        await anyio.lowlevel.checkpoint()

    def __del__(self) -> None:
        # Dropped without aclose() (the hub holds it weakly): close the streams quietly.
        self._send.close()
        self._receive.close()


class EventHub:
    """Fans events out to subscribers without ever blocking the publisher.

    A subscriber that falls ``capacity`` events behind loses the newest ones (with a warning in
    the log, once until it catches up); reloads never wait for a slow consumer. Subscriptions
    are held weakly: one dropped without being closed (a ``break`` out of ``async for``
    without ``async with``) is forgotten, not fed forever.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._subscriptions: weakref.WeakSet[EventSubscription] = weakref.WeakSet()
        self._closed = False

    def subscribe(self, initial: Sequence[ConfigEvent] = ()) -> EventSubscription:
        """A new subscription that first receives ``initial``; after ``close()``, one whose
        iteration ends once it has."""
        subscription = EventSubscription(self, max(self.capacity, len(initial)))
        for event in initial:
            subscription._send.send_nowait(event)
        if self._closed:
            subscription._send.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: EventSubscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, events: Sequence[ConfigEvent]) -> None:
        for subscription in list(self._subscriptions):
            for event in events:
                try:
                    subscription._send.send_nowait(event)
                    subscription._lagging = False
                except anyio.WouldBlock:
                    if not subscription._lagging:
                        subscription._lagging = True
                        logger.warning(
                            "a config event subscriber is %d events behind; dropping events "
                            "until it catches up (from %r on)",
                            self.capacity,
                            event,
                        )
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self.unsubscribe(subscription)
                    break

    def close(self) -> None:
        """End every subscription's iteration, and that of any made later."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription._send.close()
        self._subscriptions.clear()
