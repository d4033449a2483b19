"""``CNIPlugin``: ocicni's pod API as anyio coroutines.

Every operation works on one immutable [`ConfigSnapshot`][cni_async.ConfigSnapshot], taken when it
starts; a reload swaps in a new snapshot and never waits for, or blocks, pod operations. Operations
on one pod (namespace + name) are serialised by a lock whose wait is cancellable; different pods run
in parallel, and the networks of one pod are attached concurrently, one task per network.

A set-up that fails on any network, or is cancelled, is rolled back: every network that was
started gets DEL in a shielded scope with its own deadline (``cleanup_timeout``), so nothing stays
attached, and then the error or the cancellation propagates.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, Self

import anyio

from ._attachments import (
    DEFAULT_INTERFACE_NAME,
    Attachment,
    as_config_version,
    as_current,
    assign_ifnames,
    plan_networks,
    runtime_conf,
)
from ._cache import CacheEntry
from ._config import NetworkConfigList, parse_conflist, with_directory_plugins
from ._engine import DEFAULT_TIMEOUTS, CNIEngine, RuntimeConf
from ._errors import (
    CacheError,
    CNIError,
    ConfigError,
    InvalidArgument,
    MultipleErrors,
    NamespaceError,
    NetworkNotFound,
    PodNetworkError,
)
from ._events import (
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
from ._exec import PluginExecutor, held_lock
from ._fanout import errors_by_index, for_each
from ._locks import KeyedLock, SharedGate
from ._models import NetResult, PodNetwork
from ._namespaces import Namespaces, NetlinkNamespaces, usable_netns
from ._observe import Observer, operation_info
from ._results import Interface, IPConfig, Result, Result100
from ._snapshot import ConfigSnapshot
from ._snapshot_build import VersionCache, build_snapshot
from ._specversion import CURRENT_VERSION, version_at_least_or_false
from ._validation import validate_cni_args, validate_container_id
from ._watch import ConfigWatcher

__all__ = ["DEFAULT_BIN_DIR", "DEFAULT_CONF_DIR", "DEFAULT_INTERFACE_NAME", "CNIPlugin"]

logger = logging.getLogger("cni_async.pod")

DEFAULT_CONF_DIR: Final = "/etc/cni/net.d"
DEFAULT_BIN_DIR: Final = "/opt/cni/bin"


class CNIPlugin(anyio.AsyncContextManagerMixin):
    """Attaches pods to CNI networks: ocicni's ``CNIPlugin``, as an async context manager.

    ``async with CNIPlugin(...) as cni`` loads the configuration directory and starts watching it;
    leaving the block stops watching, ends [`config_events`][cni_async.CNIPlugin.config_events]
    iterations, waits for operations still running through it and closes it. Calls after that raise
    ``anyio.ClosedResourceError``. An exception raised in the block leaves it as it is, not wrapped
    in an ``ExceptionGroup``, whether the plugin watches or not.

    :param conf_dir: the directory of network configurations
    :param bin_dirs: the directories searched for plugin binaries, in order
    :param cache_dir: the cache directory (``/var/lib/cni`` by default, shared with Go runtimes)
    :param default_network: a fixed default network; without it the default is the first valid
        configuration in file order, re-evaluated on every reload
    :param watch: watch the configuration and plugin directories with inotify and reload on
        every change, in a task of the plugin's own (ocicni's ``InitCNINoInotify`` is
        ``watch=False``); either way a request for a network that is not loaded reloads once
        before failing, and [`reload`][cni_async.CNIPlugin.reload] reloads on demand
    :param executor: how plugins are run (tests swap in fakes)
    :param max_concurrent_execs: a limit on plugin processes running at once (``None``: no
        limit); the VERSION probes of configuration loads do not count against it
    :param cleanup_timeout: seconds each rollback may take, even after a cancellation
    :param cni_args: extra ``CNI_ARGS`` pairs for every plugin call (never taken from this
        process's environment)
    :param inherit_env: names of variables copied from this process's environment to plugins
    :param debounce: seconds of quiet that end a burst of configuration changes (one reload)
    :param timeouts: per-verb limits on one plugin run, in seconds (see
        [`DEFAULT_TIMEOUTS`][cni_async.DEFAULT_TIMEOUTS]; ``None`` for no limit)
    :param observers: told about every operation, plugin run, rollback and reload, in order
        ([`Metrics`][cni_async.Metrics], [`OpenTelemetryObserver`][cni_async.OpenTelemetryObserver]
        or your own [`Observer`][cni_async.Observer])
    :param owner: a name for this runtime, written into every cache entry and set-up record it
        makes. With it, [`gc`][cni_async.CNIPlugin.gc] DELs only stale attachments carrying this
        name, so those of another runtime sharing the cache directory and a network (Go
        runtimes write no owner) are never touched, and it sends no GC verb: the plugins would
        free every attachment not listed, and another runtime's ADD in flight is in no cache
        yet. Without it GC is libcni's: every stale attachment of a network this plugin has a
        configuration for, then the GC verb.
    :param allow_host_netns: accept this process's own network namespace, or PID 1's, as a
        pod's. By default set-up and status refuse them
        ([`NamespaceError`][cni_async.NamespaceError]), since the plugins would configure the
        host's own network, and teardown and GC send DEL with an empty ``CNI_NETNS`` there (the
        IPAM is released; no interface of the host is deleted). libcni does not check.
    :param namespaces: how the pod's network namespace is worked in
        ([`NetlinkNamespaces`][cni_async.NetlinkNamespaces] by default; tests swap in fakes)
    """

    def __init__(
        self,
        conf_dir: str = DEFAULT_CONF_DIR,
        bin_dirs: Sequence[str] = (DEFAULT_BIN_DIR,),
        cache_dir: str | None = None,
        default_network: str | None = None,
        watch: bool = True,
        *,
        executor: PluginExecutor | None = None,
        max_concurrent_execs: int | None = max(8, 4 * (os.cpu_count() or 1)),
        cleanup_timeout: float = 60.0,
        cni_args: Iterable[tuple[str, str]] = (),
        inherit_env: Iterable[str] = ("PATH",),
        debounce: float = 0.05,
        timeouts: Mapping[str, float | None] | None = None,
        observers: Sequence[Observer] = (),
        owner: str | None = None,
        allow_host_netns: bool = False,
        namespaces: Namespaces | None = None,
    ) -> None:
        if owner is not None and not (isinstance(owner, str) and owner):
            raise InvalidArgument(f"owner must be a non-empty string or None, not {owner!r}")
        self.conf_dir = conf_dir
        self._owner = owner or ""
        self._allow_host_netns = allow_host_netns
        self._namespaces: Namespaces = namespaces or NetlinkNamespaces()
        self.watch = watch
        self._default_name = default_network or None
        self._engine = CNIEngine(
            bin_dirs,
            cache_dir=cache_dir,
            executor=executor,
            inherit_env=inherit_env,
            max_concurrent_execs=max_concurrent_execs,
            timeouts=timeouts,
            observers=observers,
            owner=owner or "",
        )
        self._observers = self._engine.observers
        self._cleanup_timeout = cleanup_timeout
        self._cni_args = tuple(cni_args)
        validate_cni_args(self._cni_args)
        self._debounce = debounce
        self._versions = VersionCache(self._engine)
        self._generation = 0
        self._snapshot = ConfigSnapshot(conf_dir=conf_dir)
        self._reload_lock = anyio.Lock()
        self._pod_locks = KeyedLock()
        # Set-ups pass shared; GC's verb passes alone, so that no ADD runs while the plugins are
        # told which attachments are in use.
        self._gc_gate = SharedGate()
        # Container IDs with a set-up in flight: GC never takes what they recorded for stale.
        self._setting_up: dict[str, int] = {}
        self._events = EventHub()
        self._watcher: ConfigWatcher | None = None
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._opened = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        if self._opened or self._closed:
            raise RuntimeError("a CNIPlugin can be entered only once")
        self._opened = True
        try:
            await self._engine.cache.remove_stale_temporaries()
            if not self.watch:
                await self.reload()
                yield self
                return
            self._watcher = ConfigWatcher(
                self.conf_dir,
                self._engine.bin_dirs,
                self._build,
                default_name=self._default_name,
                debounce=self._debounce,
            )
            await self._watcher.start(initial_events=False)
            first = self._watcher.snapshot
            assert first is not None
            # Subscribers from before entering learn the first configuration, as with
            # watch=False (a WatcherDegraded from the start reaches them through _follow).
            # (_install tells the observers of the reload, through its Reloaded event.)
            self._install(first, diff_snapshots(None, first, default_name=self._default_name))
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._follow, self._watcher)
                    try:
                        yield self
                    finally:
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # _follow raises nothing, so a group of one holds what the body raised: let it
                # out as it is, exactly as with watch=False.
                if len(group.exceptions) != 1:
                    raise
                only = group.exceptions[0]
                context, suppress = only.__context__, only.__suppress_context__
                try:
                    raise only
                finally:  # raising it here made the group its context: undo that
                    only.__context__, only.__suppress_context__ = context, suppress
                    del only
        finally:
            self._closed = True
            self._events.close()
            with anyio.move_on_after(self._cleanup_timeout, shield=True):
                if self._watcher is not None:
                    await self._watcher.aclose()
                await self._idle.wait()

    async def aclose(self) -> None:
        """Stop accepting operations and wait for those in flight. Idempotent.

        Leaving ``async with`` does this too, and also stops watching.
        """
        self._closed = True
        self._events.close()
        await self._idle.wait()

    def shutdown(self) -> None:
        """Stop accepting new operations at once (ocicni's ``Shutdown``); see
        [`aclose`][cni_async.CNIPlugin.aclose]."""
        self._closed = True

    @asynccontextmanager
    async def _operation(self, kind: str, pod: PodNetwork | None = None) -> AsyncIterator[None]:
        if self._closed or not self._opened:
            raise anyio.ClosedResourceError(
                "this CNIPlugin is closed" if self._closed else "enter the CNIPlugin first"
            )
        if self._in_flight == 0:
            self._idle = anyio.Event()
        self._in_flight += 1
        try:
            if not self._observers:
                yield
            else:
                with self._observers.operation(operation_info(kind, pod)):
                    yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # -- configuration ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The plugin's name: ``"cni"``, as in ocicni."""
        return "cni"

    @property
    def default_network_name(self) -> str | None:
        """The default network's name, or ``None`` while there is none."""
        default = self._snapshot.default
        return default.name if default is not None else None

    @property
    def config(self) -> ConfigSnapshot:
        """The configuration snapshot new operations will use."""
        return self._snapshot

    @property
    def engine(self) -> CNIEngine:
        """The protocol engine underneath, for lower-level calls."""
        return self._engine

    @property
    def watcher(self) -> ConfigWatcher | None:
        """The configuration watcher (``None`` with ``watch=False``)."""
        return self._watcher

    def config_events(self) -> EventSubscription:
        """Subscribe to configuration events.

        The subscription first receives the current state (every network as added, the
        default, readiness), then every change as it happens; iteration ends when the
        subscription or the plugin is closed::

            async with cni.config_events() as events:
                async for event in events:
                    ...

        A subscriber that falls far behind loses events (logged); reloads never wait for it.
        """
        return self._events.subscribe(
            diff_snapshots(None, self._snapshot, default_name=self._default_name)
        )

    async def _build(self, previous: ConfigSnapshot | None) -> ConfigSnapshot:
        self._generation += 1
        return await build_snapshot(
            self.conf_dir,
            self._engine,
            self._versions,
            default_name=self._default_name,
            generation=self._generation,
            previous=previous,
        )

    def _install(self, snapshot: ConfigSnapshot, events: Sequence[ConfigEvent]) -> None:
        """Swap in ``snapshot`` (unless a newer one is in place) and publish ``events``."""
        if snapshot.generation > self._snapshot.generation:
            self._snapshot = snapshot
        for event in events:
            if isinstance(event, FileInvalid):
                logger.warning("CNI configuration %s is invalid: %s", event.path, event.reason)
            elif isinstance(event, NetworkAdded | NetworkRemoved | NetworkChanged | NotReady):
                logger.info("CNI configuration: %s", event)
            elif isinstance(event, DefaultNetworkChanged):
                logger.info("default CNI network is now %s", event.current)
            elif isinstance(event, Reloaded) and event.generation == self._snapshot.generation:
                self._observers.reloaded(self._snapshot)
        self._events.publish(events)

    async def _follow(self, watcher: ConfigWatcher) -> None:
        """Apply every reload the watcher makes (runs in the plugin's own task group).

        Changes are published as the difference from the snapshot in use, as
        [`reload`][cni_async.CNIPlugin.reload] does: the watcher's own events are the difference
        from its previous snapshot, which a [`reload`][cni_async.CNIPlugin.reload] in between may
        have replaced (its events would come twice).
        """
        try:
            async for event in watcher:
                snapshot = watcher.snapshot
                assert snapshot is not None
                if isinstance(event, WatcherDegraded):
                    self._install(snapshot, [event])
                elif snapshot.generation > self._snapshot.generation:
                    # The first event of a reload: publish all of it at once. The rest of its
                    # events, and those of a snapshot older than the one in use, are skipped.
                    self._install(
                        snapshot,
                        diff_snapshots(
                            self._snapshot if self._snapshot.generation else None,
                            snapshot,
                            default_name=self._default_name,
                        ),
                    )
        except Exception as exc:  # never let a watcher bug cancel the caller's block
            logger.exception("the CNI config watcher failed; reloading only on a miss from now")
            self._events.publish([WatcherDegraded(f"watcher failed: {exc!r}", 0.0)])

    async def reload(self) -> ConfigSnapshot:
        """Load the configuration directory again and swap in the new snapshot.

        In-flight operations keep the snapshot they started with; the changes are published to
        [`config_events`][cni_async.CNIPlugin.config_events] subscribers.
        """
        async with self._reload_lock:
            return await self._reload_locked()

    async def _reload_locked(self) -> ConfigSnapshot:
        previous = self._snapshot
        snapshot = await self._build(previous if previous.generation else None)
        self._install(
            snapshot,
            diff_snapshots(
                previous if previous.generation else None,
                snapshot,
                default_name=self._default_name,
            ),
        )
        return self._snapshot

    async def _reload_on_miss(self, seen: ConfigSnapshot) -> ConfigSnapshot:
        async with self._reload_lock:
            if self._snapshot.generation != seen.generation:  # somebody reloaded meanwhile
                return self._snapshot
            return await self._reload_locked()

    async def _resolve(self, pod: PodNetwork) -> list[tuple[NetworkConfigList, str]]:
        """The (network, ifname) pairs of ``pod``, in request order; reloads once on a miss."""
        snapshot = self._snapshot
        plan = plan_networks(snapshot, pod, self._default_name)
        if isinstance(plan, NetworkNotFound):
            snapshot = await self._reload_on_miss(snapshot)
            plan = plan_networks(snapshot, pod, self._default_name)
            if isinstance(plan, NetworkNotFound):
                raise plan
        return plan

    async def _usable_netns(self, netns: str) -> str:
        return await usable_netns(self._namespaces, netns, allow_host=self._allow_host_netns)

    def _refuse_host_netns(self, netns: str) -> None:
        if not self._allow_host_netns and (who := self._namespaces.host_namespace(netns)):
            raise NamespaceError(
                f"{netns} is {who} network namespace, not a pod's; if that is really meant, "
                "pass allow_host_netns=True to CNIPlugin (cni-async pod: --allow-host-netns)",
                netns=netns,
            )

    def _runtime_conf(self, pod: PodNetwork, network: str, ifname: str, netns: str) -> RuntimeConf:
        return runtime_conf(pod, network, ifname, netns, self._cni_args)

    # -- set-up -------------------------------------------------------------------------------

    async def set_up_pod(self, pod: PodNetwork) -> list[NetResult]:
        """Attach ``pod`` to its networks (the default network when it names none).

        ``lo`` is brought up in the pod's namespace first; then every network is attached
        concurrently. Results come back in the order of ``pod.networks``.

        **Cancellation and failure**: if any network fails, or the call is cancelled, every
        network that was started gets DEL (shielded, at most ``cleanup_timeout`` seconds), so
        nothing stays attached and no cache entry remains; then the error or the cancellation
        propagates.

        :raises InvalidArgument: a bad container ID, interface name, static IP or MAC, or
            duplicate interface names (before any plugin runs)
        :raises NetworkNotFound: a requested network (or the default) has no valid configuration
        :raises NamespaceError: the pod's network namespace does not exist
        :raises PodNetworkError: one or more networks failed; each plugin error is kept
        """
        async with self._operation("set_up_pod", pod):
            validate_container_id(pod.id)  # inside: observers see a refused call too
            self._refuse_host_netns(pod.netns)
            plan = await self._resolve(pod)
            attachments = [
                Attachment(net, self._runtime_conf(pod, net.name, ifname, pod.netns))
                for net, ifname in plan
            ]
            async with self._pod_locks.hold((pod.namespace, pod.name)), self._gc_gate.shared():
                started = time.perf_counter()
                self._setting_up[pod.id] = self._setting_up.get(pod.id, 0) + 1
                try:
                    earlier, held = await self._record_intent(pod.id, attachments, pod.netns)
                    # The plugins inherit the intent's lock: should this process die, nobody
                    # takes the set-up for abandoned while one of them still runs.
                    token = held_lock.set(held)
                    try:
                        results = await self._attach_all(pod, attachments, earlier)
                    finally:
                        held_lock.reset(token)
                        os.close(held)
                finally:
                    if self._setting_up[pod.id] == 1:
                        del self._setting_up[pod.id]
                    else:
                        self._setting_up[pod.id] -= 1
            logger.info(
                "set up pod %s/%s on %s in %.1f ms",
                pod.namespace,
                pod.name,
                ", ".join(a.network.name for a in attachments),
                (time.perf_counter() - started) * 1000,
            )
            return [
                NetResult(
                    name=a.network.name,
                    ifname=a.rt.ifname,
                    result=as_current(r),
                    config_result=as_config_version(r, a.network),
                )
                for a, r in zip(attachments, results, strict=True)
            ]

    async def _record_intent(
        self, container_id: str, attachments: list[Attachment], netns: str
    ) -> tuple[list[CacheEntry], int]:
        """Bring ``lo`` up and durably record what this set-up will attach (one worker-thread
        hop for both); return what an earlier, unfinished set-up of the same container
        recorded and this one does not cover, and the descriptor holding the record's lock."""
        cache = self._engine.cache
        ours = {(a.network.name, a.rt.ifname) for a in attachments}
        earlier = [
            e
            for e in await cache.read_intent(container_id)
            if (e.network_name, e.if_name) not in ours
        ]
        with self._namespaces.loopback_up(netns) as bring_lo_up:
            held = await cache.write_intent_held(
                container_id,
                [*earlier, *(CNIEngine.cache_entry(a.network, a.rt, None) for a in attachments)],
                before=bring_lo_up,
            )
        return earlier, held

    async def _settle_intent(self, container_id: str, earlier: list[CacheEntry]) -> None:
        """The set-up is settled (attached and cached, or rolled back): keep only what an
        earlier, unfinished set-up left for teardown or GC to find."""
        cache = self._engine.cache
        if earlier:
            await cache.write_intent(container_id, earlier)
        else:
            await cache.remove_intent(container_id)

    async def _attach_all(
        self, pod: PodNetwork, attachments: list[Attachment], earlier: list[CacheEntry]
    ) -> list[Result]:
        results: dict[int, Result] = {}
        errors: dict[int, CNIError] = {}
        started: list[int] = []

        async def attach(index: int, tg: anyio.abc.TaskGroup) -> None:
            started.append(index)
            a = attachments[index]
            try:
                results[index] = await self._engine.add_network_list(a.network, a.rt)
            except CNIError as exc:
                errors[index] = exc
                tg.cancel_scope.cancel()  # stop the siblings; they are rolled back below

        settled = False
        try:
            if len(attachments) == 1:
                # One network: no task group, and the intent is dropped in the cache write's
                # worker thread, once the entry is durable (a removal cannot fail).
                started.append(0)
                a = attachments[0]
                remove = None if earlier else self._engine.cache.intent_remover(pod.id)
                try:
                    results[0] = result = await self._engine.add_chain(a.network, a.rt)
                    await self._engine.cache.write(
                        CNIEngine.cache_entry(a.network, a.rt, result), then=remove
                    )
                    settled = remove is not None
                except CNIError as exc:
                    errors[0] = exc
            else:
                async with anyio.create_task_group() as tg:
                    for index in range(len(attachments)):
                        tg.start_soon(attach, index, tg)
            if errors:
                raise PodNetworkError(
                    f"{pod.namespace}/{pod.name}",
                    "set-up",
                    [errors[i] for i in sorted(errors)],
                )
            if not settled:
                # Inside the try: a cancellation or a failed intent write here still rolls
                # the networks back, as a set-up that raises promises.
                await self._settle_intent(pod.id, earlier)
        except BaseException as exc:
            rolled_back = [attachments[i] for i in sorted(started)]
            rollback_errors = await self._rollback(pod.id, rolled_back, earlier)
            if rolled_back:
                self._observers.rolled_back(
                    operation_info("set_up_pod", pod),
                    [a.network.name for a in rolled_back],
                    rollback_errors,
                )
            if rollback_errors and isinstance(exc, PodNetworkError):
                raise PodNetworkError(
                    exc.pod, "set-up", exc.errors, rollback_errors=rollback_errors
                ) from None
            for error in rollback_errors:
                exc.add_note(f"rollback failed: {error}")
            raise
        return [results[i] for i in range(len(attachments))]

    async def _rollback(
        self, container_id: str, attachments: list[Attachment], earlier: list[CacheEntry]
    ) -> list[CNIError]:
        """DEL every attachment, shielded, within ``cleanup_timeout``; return the failures, one
        per network whose DEL failed or did not finish in time.

        The intent is kept when anything failed, so a later teardown or GC finds it.
        """
        failed: dict[int, CNIError] = {}
        finished: set[int] = set()
        with anyio.move_on_after(self._cleanup_timeout, shield=True):
            await self._detach_into(attachments, failed, finished)
            if not failed:
                try:
                    await self._settle_intent(container_id, earlier)
                except CNIError as exc:
                    # Every DEL worked: the intent, still naming them, only makes a later
                    # teardown or GC DEL them again. The set-up's own error goes on.
                    logger.error(
                        "could not update %s's intent after a rollback: %s", container_id, exc
                    )
        for index, a in enumerate(attachments):
            if index not in finished:  # stopped by cleanup_timeout
                failed[index] = CNIError(
                    f"rollback DEL did not finish within {self._cleanup_timeout} s",
                    verb="DEL",
                    network=a.network.name,
                )
        errors = [failed[i] for i in sorted(failed)]
        for error in errors:
            logger.error("rollback DEL failed: %s", error)
        return errors

    async def _detach_all(self, attachments: Sequence[Attachment]) -> list[CNIError]:
        errors: dict[int, CNIError] = {}
        await self._detach_into(attachments, errors, set())
        return [errors[i] for i in sorted(errors)]

    async def _detach_into(
        self, attachments: Sequence[Attachment], errors: dict[int, CNIError], finished: set[int]
    ) -> None:
        """DEL every attachment concurrently; record failures by index in ``errors`` and every
        DEL that ran to its end (failed or not) in ``finished``, as they happen."""

        async def detach(index: int) -> None:
            a = attachments[index]
            try:
                await self._engine.del_network_list(a.network, a.rt, keep_going=True)
            except CNIError as exc:
                exc.add_context(network=a.network.name)
                errors[index] = exc
            finished.add(index)

        await for_each(len(attachments), detach)

    # -- teardown -----------------------------------------------------------------------------

    async def tear_down_pod(self, pod: PodNetwork) -> None:
        """Detach ``pod`` from its networks; best effort, every network and plugin is tried.

        With ``pod.networks`` empty the attachments are found in the cache by container ID and
        torn down with the cached configuration, even if its file is gone; with nothing cached,
        the default network gets DEL. A namespace that no longer exists is passed as an empty
        ``CNI_NETNS`` (the SPEC allows it), so IP leases are still released.

        :raises PodNetworkError: some networks failed (all were tried; their cache entries stay
            so a retry or GC can finish)
        """
        async with self._operation("tear_down_pod", pod):
            validate_container_id(pod.id)  # inside: observers see a refused call too
            async with self._pod_locks.hold((pod.namespace, pod.name)):
                netns = await self._usable_netns(pod.netns)
                await self._wait_for_set_up_elsewhere(pod.id)
                intent = await self._engine.cache.read_intent(pod.id)
                attachments, errors = await self._teardown_targets(pod, netns, intent)
                errors += await self._detach_all(attachments)
                if errors:
                    raise PodNetworkError(f"{pod.namespace}/{pod.name}", "teardown", errors)
                # What an unfinished set-up recorded for networks not torn down here stays.
                await self._settle_intent(pod.id, _not_in(intent, attachments))
                logger.info(
                    "tore down pod %s/%s (%s)",
                    pod.namespace,
                    pod.name,
                    ", ".join(a.network.name for a in attachments) or "nothing attached",
                )

    async def _wait_for_set_up_elsewhere(self, container_id: str) -> None:
        """Wait while a set-up of ``container_id`` runs elsewhere: in another process, or as
        plugins that outlived the runtime that started them (a DEL now would be undone when
        their ADD finishes). Set-ups of this plugin cannot be running: the pod lock is held.

        Waits at most as long as ADD may take (``timeouts["ADD"]``, 120 s by default); then
        the teardown goes on and says so.
        """
        cache = self._engine.cache
        if not cache.intent_in_use(container_id):
            return
        limit = self._engine.timeouts.get("ADD") or DEFAULT_TIMEOUTS["ADD"]
        logger.info("waiting for a set-up of %s elsewhere to end before DEL", container_id)
        with anyio.move_on_after(limit):
            while cache.intent_in_use(container_id):
                await anyio.sleep(0.05)
            return
        logger.warning(
            "a set-up of %s elsewhere still runs after %s s; tearing down anyway",
            container_id,
            limit,
        )

    async def _teardown_targets(
        self, pod: PodNetwork, netns: str, intent: list[CacheEntry]
    ) -> tuple[list[Attachment], list[CNIError]]:
        errors: list[CNIError] = []
        cached: dict[tuple[str, str], CacheEntry] = {(e.network_name, e.if_name): e for e in intent}
        try:
            # Completed attachments (with their results) win over the intent's records.
            cached.update(
                ((e.network_name, e.if_name), e)
                for e in await self._engine.get_cached_attachments(pod.id)
            )
        except CacheError as exc:
            # An unusable cache must not stop the DELs that need none: the networks the pod
            # names (or the default) still get one, and the error is reported with the rest.
            errors.append(exc)
        snapshot = self._snapshot
        wanted = _requested(pod, cached)
        if not wanted and snapshot.default is not None:
            wanted = [(snapshot.default.name, DEFAULT_INTERFACE_NAME)]
        targets: list[Attachment] = []
        for name, ifname in dict.fromkeys(wanted):
            entry = cached.get((name, ifname))
            try:
                if entry is not None:
                    targets.append(await self._attachment_from_cache(entry, snapshot, netns))
                    continue
                network = snapshot.get(name)
                if network is None:
                    raise NetworkNotFound(
                        "not in the cache and no valid configuration to tear it down with",
                        path=self.conf_dir,
                        network=name,
                    )
                targets.append(Attachment(network, self._runtime_conf(pod, name, ifname, netns)))
            except CNIError as exc:
                exc.add_context(network=name)
                errors.append(exc)
        return targets, errors

    async def _attachment_from_cache(
        self, entry: CacheEntry, snapshot: ConfigSnapshot, netns: str | None = None
    ) -> Attachment:
        """DEL parameters for a cached attachment: its cached configuration and arguments.

        The cache keeps only the list file's bytes; plugins from the network's sub-directory
        are added back (from the current snapshot when the bytes are unchanged).

        :raises CNIError: if neither the cache nor the current configuration can say how
        """
        current = snapshot.get(entry.network_name)
        network: NetworkConfigList | None = None
        if current is not None and entry.config == current.bytes:
            network = current
        elif entry.config:
            try:
                parsed = parse_conflist(entry.config)
                if parsed.name == entry.network_name:
                    network = await with_directory_plugins(parsed, self.conf_dir)
            except ConfigError as exc:
                logger.warning(
                    "cached configuration of %s is unusable: %s", entry.network_name, exc
                )
        network = network or current
        if network is None:
            raise NetworkNotFound(
                "its cached configuration is unusable and there is no current one",
                path=self.conf_dir,
                network=entry.network_name,
            )
        return Attachment(
            network,
            RuntimeConf(
                container_id=entry.container_id,
                netns=(await self._usable_netns(entry.netns) if netns is None else netns),
                ifname=entry.if_name,
                args=tuple(entry.cni_args),
                capability_args=entry.capability_args,
            ),
        )

    # -- status -------------------------------------------------------------------------------

    async def get_pod_network_status(self, pod: PodNetwork) -> list[NetResult]:
        """The addresses of ``pod`` on each of its networks, checked.

        ``lo`` must be up. Each network gets CHECK where its version allows (0.4.0 and later)
        and its configuration does not disable it; the cached result is returned, or, with none
        cached, the interface's MAC and global addresses as read from the namespace.

        :raises NamespaceError: the namespace is gone, or ``lo`` in it is not up
        :raises PodNetworkError: CHECK failed on some networks
        """
        async with self._operation("get_pod_network_status", pod):
            validate_container_id(pod.id)  # inside: observers see a refused call too
            self._refuse_host_netns(pod.netns)
            async with self._pod_locks.hold((pod.namespace, pod.name)):
                attachments = await self._status_targets(pod)
                if not await self._namespaces.loopback_is_up(pod.netns):
                    raise NamespaceError(
                        f"loopback is not up in the network namespace of pod "
                        f"{pod.namespace}/{pod.name}",
                        netns=pod.netns,
                    )
                results: dict[int, NetResult] = {}

                async def status(index: int, a: Attachment) -> None:
                    try:
                        results[index] = await self._network_status(a)
                    except CNIError as exc:
                        exc.add_context(network=a.network.name)
                        raise

                errors = await errors_by_index(attachments, status)
            if errors:
                raise PodNetworkError(
                    f"{pod.namespace}/{pod.name}", "status", [errors[i] for i in sorted(errors)]
                )
            return [results[i] for i in range(len(attachments))]

    async def _status_targets(self, pod: PodNetwork) -> list[Attachment]:
        """What status checks: ``pod``'s networks as configured, or, for a network whose
        configuration is gone (as ocicni does), as its attachment was cached.

        :raises NetworkNotFound: a network has neither a configuration nor a cached attachment
        """
        snapshot = self._snapshot
        plan = plan_networks(snapshot, pod, self._default_name)
        if isinstance(plan, NetworkNotFound):
            snapshot = await self._reload_on_miss(snapshot)
            plan = plan_networks(snapshot, pod, self._default_name)
        if not isinstance(plan, NetworkNotFound):
            return [
                Attachment(net, self._runtime_conf(pod, net.name, ifname, pod.netns))
                for net, ifname in plan
            ]
        cached = {
            (e.network_name, e.if_name): e
            for e in await self._engine.get_cached_attachments(pod.id)
        }
        wanted = _requested(pod, cached)
        if not wanted:
            raise plan
        targets = []
        for name, ifname in wanted:
            network = snapshot.get(name)
            entry = cached.get((name, ifname))
            if network is not None:
                targets.append(
                    Attachment(network, self._runtime_conf(pod, name, ifname, pod.netns))
                )
            elif entry is not None:
                targets.append(await self._attachment_from_cache(entry, snapshot, pod.netns))
            else:
                raise NetworkNotFound(
                    "no valid configuration and no cached attachment",
                    path=self.conf_dir,
                    network=name,
                )
        return targets

    async def _network_status(self, a: Attachment) -> NetResult:
        if version_at_least_or_false(a.network.cni_version, "0.4.0") and not (
            a.network.disable_check
        ):
            cached = await self._engine.check_network_list(a.network, a.rt)
        else:
            cached = await self._engine.get_cached_result(a.network, a.rt)
        if cached is None:
            state = await self._namespaces.interface_state(a.rt.netns, a.rt.ifname)
            if state is None:
                raise NamespaceError(
                    f"interface {a.rt.ifname!r} is not in the namespace", netns=a.rt.netns
                )
            cached = Result100(
                cni_version=CURRENT_VERSION,
                interfaces=(Interface(name=a.rt.ifname, mac=state.mac, sandbox=a.rt.netns),),
                ips=tuple(IPConfig(interface=0, address=addr) for addr in state.addresses),
            )
        return NetResult(
            name=a.network.name,
            ifname=a.rt.ifname,
            result=as_current(cached),
            config_result=as_config_version(cached, a.network),
        )

    # -- readiness and GC ---------------------------------------------------------------------

    async def status(self) -> None:
        """Return when the plugin is ready; raise why it is not.

        Ready means a default network exists and, for version 1.1.0 and later, its plugins
        answer STATUS successfully.

        :raises NetworkNotFound: there is no (valid) default network
        :raises PluginError: a plugin reported it is not ready (``PluginNotAvailable``,
            ``LimitedConnectivity``, ...)
        """
        async with self._operation("status"):
            snapshot = self._snapshot
            if snapshot.default is None:
                snapshot = await self._reload_on_miss(snapshot)
            if snapshot.default is None:
                raise snapshot.missing_default(self._default_name)
            await self._engine.status_network_list(snapshot.default)

    async def gc(self, valid_pods: Iterable[PodNetwork]) -> None:
        """Remove the cached attachments of this plugin's networks that do not belong to
        ``valid_pods``, then run GC.

        Only networks with a valid configuration in ``conf_dir`` are collected, each on its own
        as libcni's ``GCNetworkList`` does: an attachment of any other network in the cache
        directory (another runtime's, or one whose file was removed) is never touched. Stale
        attachments get DEL with their cached configuration (taking their pod's lock); then
        each network of version 1.1.0 and later gets the GC verb with the attachments in use.
        Networks that set ``disableGC`` are left alone. Every step is tried. With an ``owner``
        set, only attachments carrying it are DEL'd, and no GC verb is sent (see
        [`CNIPlugin`][cni_async.CNIPlugin]'s ``owner``).

        Set-ups may run while GC does, unlike ocicni, which asks its caller to serialise them:
        an attachment whose set-up is in flight, or that was made after this call began, is
        never taken for stale and counts as in use; the GC verb itself waits for set-ups in
        flight, and set-ups that start meanwhile wait for it.

        :raises MultipleErrors: some steps failed (each error is kept)
        """
        async with self._operation("gc"):
            valid = list(valid_pods)
            valid_ids = {p.id for p in valid}
            snapshot = self._snapshot
            entries = await self._engine.get_cached_attachments()
            intents = await self._engine.cache.intents()
            known = {(e.container_id, e.network_name, e.if_name) for e in entries}
            # A locked record is a set-up in flight (in another process, say), or one whose
            # plugins outlived their runtime: none of its container's attachments is stale,
            # cached ones included, and all count as in use below.
            cache = self._engine.cache
            in_flight = {cid for cid in intents if cache.intent_in_use(cid)}
            unfinished = [
                e
                for cid, recorded in intents.items()
                if cid not in valid_ids
                for e in recorded
                if (e.container_id, e.network_name, e.if_name) not in known
            ]
            stale: dict[tuple[str, str], list[CacheEntry]] = {}
            for entry in [*entries, *unfinished]:
                current = snapshot.get(entry.network_name)
                if (
                    current is None  # not a network of ours: never collected (libcni's rule)
                    or current.disable_gc
                    or entry.container_id in valid_ids
                    or entry.container_id in self._setting_up
                    or entry.container_id in in_flight
                    or (self._owner and entry.owner != self._owner)
                ):
                    continue
                args = dict(entry.cni_args)
                key = (
                    args.get("K8S_POD_NAMESPACE", ""),
                    args.get("K8S_POD_NAME", entry.container_id),
                )
                stale.setdefault(key, []).append(entry)
            errors: list[CNIError] = []

            async def collect(key: tuple[str, str], group: list[CacheEntry]) -> None:
                async with self._pod_locks.hold(key):
                    targets = []
                    failed: list[CNIError] = []
                    for entry in group:
                        try:
                            targets.append(await self._attachment_from_cache(entry, snapshot))
                        except CNIError as exc:
                            failed.append(exc)
                    failed.extend(await self._detach_all(targets))
                    if not failed:
                        done = {(e.network_name, e.if_name) for e in group}
                        for cid in {e.container_id for e in group} & set(intents):
                            # Records GC left alone (a disableGC network) stay for later.
                            await self._settle_intent(
                                cid,
                                [
                                    e
                                    for e in intents[cid]
                                    if (e.network_name, e.if_name) not in done
                                ],
                            )
                    errors.extend(failed)

            groups = list(stale.items())

            async def collect_group(index: int) -> None:
                await collect(*groups[index])

            await for_each(len(groups), collect_group)

            found_stale = {
                (e.container_id, e.network_name, e.if_name)
                for group in stale.values()
                for e in group
            }
            if not self._owner:  # with one, the verb would free what others have in flight
                errors += await self._gc_verb(snapshot, valid, found_stale)
            if errors:
                raise MultipleErrors("garbage collection failed", errors)

    async def _gc_verb(
        self,
        snapshot: ConfigSnapshot,
        valid: list[PodNetwork],
        found_stale: set[tuple[str, str, str]],
    ) -> list[CNIError]:
        """Send GC to every network, with the attachments in use; return what failed.

        No set-up runs while the plugins are told what is in use. What is recorded now and was
        not found stale (a pod set up since ``gc`` began, say) is in use, as is what the valid
        pods ask for.
        """
        errors: list[CNIError] = []
        valid_ids = {p.id for p in valid}
        async with self._gc_gate.exclusive():
            in_use: dict[str, set[tuple[str, str]]] = {}
            now = [
                *await self._engine.get_cached_attachments(),
                *(e for found in (await self._engine.cache.intents()).values() for e in found),
            ]
            for entry in now:
                attachment = (entry.container_id, entry.network_name, entry.if_name)
                if entry.container_id in valid_ids or attachment not in found_stale:
                    in_use.setdefault(entry.network_name, set()).add(
                        (entry.container_id, entry.if_name)
                    )
            for pod in valid:
                try:
                    plan = plan_networks(snapshot, pod, self._default_name)
                except CNIError as exc:  # this pod's request is invalid; GC goes on
                    errors.append(exc)
                    continue
                if not isinstance(plan, NetworkNotFound):
                    for network, ifname in plan:
                        in_use.setdefault(network.name, set()).add((pod.id, ifname))
            for network in snapshot.networks:  # gc_plugins skips disableGC and pre-1.1.0
                try:
                    await self._engine.gc_plugins(network, sorted(in_use.get(network.name, ())))
                except MultipleErrors as exc:
                    errors.extend(exc.errors)
        return errors


def _requested(
    pod: PodNetwork, cached: Mapping[tuple[str, str], CacheEntry]
) -> list[tuple[str, str]]:
    """The (network, ifname) pairs ``pod`` names, or with none named, every cached one.

    A request without an explicit ifname matches what the cache recorded for that network.
    """
    if not pod.networks:
        return list(cached)
    wanted: list[tuple[str, str]] = []
    assigned = assign_ifnames(pod.networks)
    for request, (name, ifname) in zip(pod.networks, assigned, strict=True):
        recorded = [key for key in cached if key[0] == name] if not request.ifname else []
        wanted.extend(recorded or [(name, ifname)])
    return list(dict.fromkeys(wanted))


def _not_in(intent: list[CacheEntry], attachments: Sequence[Attachment]) -> list[CacheEntry]:
    """The intent's records that none of ``attachments`` covers."""
    covered = {(a.network.name, a.rt.ifname) for a in attachments}
    return [e for e in intent if (e.network_name, e.if_name) not in covered]
