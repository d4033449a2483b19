"""``ConfigSource``: the one owner of a plugin's configuration.

It holds the snapshot in use, the generation counter, the default network's name, the reload
lock and the hub that publishes configuration events. Reloads happen here, whether asked for,
made by the watcher, or forced by a request for a network that is not loaded; pod operations
only read ``snapshot`` (one reference, swapped by a reload), and ``reload_on_miss`` when it
lacks a network they were asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import anyio

from .._libcni.engine import CNIEngine
from .build import VersionCache, build_snapshot
from .events import (
    ConfigEvent,
    DefaultNetworkChanged,
    EventHub,
    EventSubscription,
    FileInvalid,
    NetworkAdded,
    NetworkChanged,
    NetworkRemoved,
    NotReady,
    Reloaded,
    WatcherDegraded,
    diff_snapshots,
)
from .snapshot import ConfigSnapshot
from .watch import ConfigWatcher

__all__ = ["ConfigSource", "ReloadListener", "watch_config"]

logger = logging.getLogger("cni_async.pod")


class ReloadListener(Protocol):
    """Told of every snapshot ``ConfigSource`` installs (the pod layer's observers are one)."""

    def reloaded(self, snapshot: ConfigSnapshot) -> None: ...


class ConfigSource:
    """The configuration of one plugin: built, swapped in and published here only.

    :param conf_dir: the configuration directory
    :param engine: runs the VERSION probes that validate each network
    :param observers: told of every reload that is installed (``None``: nobody)
    :param default_name: a fixed default network, or ``None`` for the first valid one
    """

    def __init__(
        self,
        conf_dir: str,
        engine: CNIEngine,
        observers: ReloadListener | None,
        *,
        default_name: str | None,
    ) -> None:
        self.conf_dir = conf_dir
        self.default_name = default_name
        self._engine = engine
        self._observers = observers
        self._versions = VersionCache(engine)
        self._generation = 0
        self._reload_lock = anyio.Lock()
        self.snapshot = ConfigSnapshot(conf_dir=conf_dir)
        self.events = EventHub()

    def subscribe(self) -> EventSubscription:
        """A subscription that starts with the current state, then every change."""
        return self.events.subscribe(
            diff_snapshots(None, self.snapshot, default_name=self.default_name)
        )

    async def build(self, previous: ConfigSnapshot | None) -> ConfigSnapshot:
        """A new generation of the configuration (not installed): for ``reload`` and for the
        watcher, whose reloads ``follow`` installs."""
        self._generation += 1
        return await build_snapshot(
            self.conf_dir,
            self._engine,
            self._versions,
            default_name=self.default_name,
            generation=self._generation,
            previous=previous,
        )

    def watcher(
        self, *, debounce: float = 0.05, poll_interval: float = 2.0, use_inotify: bool = True
    ) -> ConfigWatcher:
        """A watcher of the directory and the engine's plugin directories that builds its
        snapshots here (so generations and VERSION answers are shared with ``reload``)."""
        return ConfigWatcher(
            self.conf_dir,
            self._engine.bin_dirs,
            self.build,
            default_name=self.default_name,
            debounce=debounce,
            poll_interval=poll_interval,
            use_inotify=use_inotify,
        )

    def install(self, snapshot: ConfigSnapshot, events: Sequence[ConfigEvent]) -> None:
        """Swap in ``snapshot`` (unless a newer one is in place) and publish ``events``."""
        if snapshot.generation > self.snapshot.generation:
            self.snapshot = snapshot
        for event in events:
            if isinstance(event, FileInvalid):
                logger.warning("CNI configuration %s is invalid: %s", event.path, event.reason)
            elif isinstance(event, NetworkAdded | NetworkRemoved | NetworkChanged | NotReady):
                logger.info("CNI configuration: %s", event)
            elif isinstance(event, DefaultNetworkChanged):
                logger.info("default CNI network is now %s", event.current)
            elif (
                isinstance(event, Reloaded)
                and event.generation == self.snapshot.generation
                and self._observers is not None
            ):
                self._observers.reloaded(self.snapshot)
        self.events.publish(events)

    def install_first(self, snapshot: ConfigSnapshot) -> None:
        """Install the watcher's first snapshot, published as a whole (as ``reload`` does)."""
        self.install(snapshot, diff_snapshots(None, snapshot, default_name=self.default_name))

    async def follow(self, watcher: ConfigWatcher) -> None:
        """Install every reload the watcher makes (run in a task of the plugin's).

        Changes are published as the difference from the snapshot in use, as ``reload`` does:
        the watcher's own events are the difference from its previous snapshot, which a
        ``reload`` in between may have replaced (its events would come twice). Never raises:
        a failing watcher is logged and published as ``WatcherDegraded``.
        """
        try:
            async for event in watcher:
                snapshot = watcher.snapshot
                assert snapshot is not None
                if isinstance(event, WatcherDegraded):
                    self.install(snapshot, [event])
                elif snapshot.generation > self.snapshot.generation:
                    # The first event of a reload: publish all of it at once. The rest of its
                    # events, and those of a snapshot older than the one in use, are skipped.
                    self.install(
                        snapshot,
                        diff_snapshots(
                            self.snapshot if self.snapshot.generation else None,
                            snapshot,
                            default_name=self.default_name,
                        ),
                    )
        except Exception as exc:  # never let a watcher bug cancel the caller's block
            logger.exception("the CNI config watcher failed; reloading only on a miss from now")
            self.events.publish([WatcherDegraded(f"watcher failed: {exc!r}", 0.0)])

    async def reload(self) -> ConfigSnapshot:
        """Load the configuration directory again and swap in the new snapshot."""
        async with self._reload_lock:
            return await self._reload_locked()

    async def _reload_locked(self) -> ConfigSnapshot:
        previous = self.snapshot
        snapshot = await self.build(previous if previous.generation else None)
        self.install(
            snapshot,
            diff_snapshots(
                previous if previous.generation else None,
                snapshot,
                default_name=self.default_name,
            ),
        )
        return self.snapshot

    async def reload_on_miss(self, seen: ConfigSnapshot) -> ConfigSnapshot:
        """Reload once after ``seen`` lacked something, unless somebody did meanwhile."""
        async with self._reload_lock:
            if self.snapshot.generation != seen.generation:
                return self.snapshot
            return await self._reload_locked()


def watch_config(
    conf_dir: str,
    bin_dirs: Sequence[str],
    *,
    default_network: str | None = None,
    debounce: float = 0.05,
    poll_interval: float = 2.0,
    use_inotify: bool = True,
) -> ConfigWatcher:
    """Watch a configuration directory on its own, without a [`CNIPlugin`][cni_async.CNIPlugin].

    ::

        async with watch_config("/etc/cni/net.d", ["/opt/cni/bin"]) as events:
            async for event in events:
                print(event)

    Networks are validated as [`CNIPlugin`][cni_async.CNIPlugin] does (VERSION answers cached per
    plugin binary), by the same ``ConfigSource``.
    """
    source = ConfigSource(conf_dir, CNIEngine(bin_dirs), None, default_name=default_network or None)
    return source.watcher(debounce=debounce, poll_interval=poll_interval, use_inotify=use_inotify)
