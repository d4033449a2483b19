"""``CNIPlugin``: ocicni's pod API as anyio coroutines, a facade over the pod layer.

Every operation works on one immutable [`ConfigSnapshot`][cni_async.ConfigSnapshot], taken when it
starts; a reload swaps in a new snapshot and never waits for, or blocks, pod operations. Operations
on one pod (namespace + name) are serialised by a lock whose wait is cancellable; different pods run
in parallel, and the networks of one pod are attached concurrently, one task per network.

This module holds the plugin's lifecycle and its public methods, each admitting the call
(closed or not, observed) and handing it on: the configuration to ``_confsource``, set-up (with
its rollback) to ``_setup``, teardown to ``_teardown``, status to ``_status`` and GC to ``_gc``,
which share the ``PodContext`` of ``_podctx``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, Self

import anyio

from .._confdir.events import EventSubscription
from .._confdir.snapshot import ConfigSnapshot
from .._confdir.source import ConfigSource
from .._confdir.watch import ConfigWatcher
from .._errors import InvalidArgument
from .._libcni.engine import CNIEngine
from .._libcni.exec import PluginExecutor
from .._observers.observer import Observer, Observers
from .._spec.validation import validate_cni_args, validate_container_id
from .context import PodContext, operation_info
from .gc import collect_garbage
from .models import NetResult, PodNetwork
from .namespaces import Namespaces, NetlinkNamespaces
from .planning import DEFAULT_INTERFACE_NAME
from .retry import RetryPolicy, with_retries
from .setup import set_up
from .status import pod_status
from .teardown import tear_down

__all__ = ["DEFAULT_BIN_DIR", "DEFAULT_CONF_DIR", "DEFAULT_INTERFACE_NAME", "CNIPlugin"]

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
    :param retry: run [`set_up_pod`][cni_async.CNIPlugin.set_up_pod],
        [`tear_down_pod`][cni_async.CNIPlugin.tear_down_pod] and [`gc`][cni_async.CNIPlugin.gc]
        again when a plugin asks to try again later (CNI code 11), as the
        [`RetryPolicy`][cni_async.RetryPolicy] says; ``None`` (the default): never retry
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
        retry: RetryPolicy | None = None,
    ) -> None:
        if owner is not None and not (isinstance(owner, str) and owner):
            raise InvalidArgument(f"owner must be a non-empty string or None, not {owner!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgument(f"retry must be a RetryPolicy or None, not {retry!r}")
        self._retry = retry
        self.conf_dir = conf_dir
        self.watch = watch
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
        self._observers = Observers(observers)
        self._cleanup_timeout = cleanup_timeout
        cni_args = tuple(cni_args)
        validate_cni_args(cni_args)
        self._debounce = debounce
        self._source = ConfigSource(
            conf_dir, self._engine, self._observers, default_name=default_network or None
        )
        self._pods = PodContext(
            engine=self._engine,
            source=self._source,
            namespaces=namespaces or NetlinkNamespaces(),
            observers=self._observers,
            cleanup_timeout=cleanup_timeout,
            cni_args=cni_args,
            owner=owner or "",
            allow_host_netns=allow_host_netns,
        )
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
            self._watcher = self._source.watcher(debounce=self._debounce)
            await self._watcher.start(initial_events=False)
            first = self._watcher.snapshot
            assert first is not None
            # Subscribers from before entering learn the first configuration, as with
            # watch=False (a WatcherDegraded from the start reaches them through follow).
            # (install tells the observers of the reload, through its Reloaded event.)
            self._source.install_first(first)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._source.follow, self._watcher)
                    try:
                        yield self
                    finally:
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # follow raises nothing, so a group of one holds what the body raised: let it
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
            self._source.events.close()
            self._pods.stop_retries()
            with anyio.move_on_after(self._cleanup_timeout, shield=True):
                if self._watcher is not None:
                    await self._watcher.aclose()
                await self._idle.wait()

    async def aclose(self) -> None:
        """Stop accepting operations and wait for those in flight. Idempotent.

        Operations in flight are not retried any more: one waiting to retry (see
        [`RetryPolicy`][cni_async.RetryPolicy]) raises its last error at once. Leaving
        ``async with`` does this too, and also stops watching.
        """
        self._closed = True
        self._source.events.close()
        self._pods.stop_retries()
        await self._idle.wait()

    def shutdown(self) -> None:
        """Stop accepting new operations at once (ocicni's ``Shutdown``), and retrying those in
        flight after their current attempt or wait; see [`aclose`][cni_async.CNIPlugin.aclose]."""
        self._closed = True
        self._pods.retries_stopped = True

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
        default = self._source.snapshot.default
        return default.name if default is not None else None

    @property
    def config(self) -> ConfigSnapshot:
        """The configuration snapshot new operations will use."""
        return self._source.snapshot

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
        return self._source.subscribe()

    async def reload(self) -> ConfigSnapshot:
        """Load the configuration directory again and swap in the new snapshot.

        In-flight operations keep the snapshot they started with; the changes are published to
        [`config_events`][cni_async.CNIPlugin.config_events] subscribers.
        """
        return await self._source.reload()

    # -- pods ---------------------------------------------------------------------------------

    async def set_up_pod(self, pod: PodNetwork) -> list[NetResult]:
        """Attach ``pod`` to its networks (the default network when it names none).

        ``lo`` is brought up in the pod's namespace first; then every network is attached
        concurrently. Results come back in the order of ``pod.networks``.

        **Cancellation and failure**: if any network fails, or the call is cancelled, every
        network that was started gets DEL (shielded, at most ``cleanup_timeout`` seconds), so
        nothing stays attached and no cache entry remains; then the error or the cancellation
        propagates.

        **Retries**: with a ``retry`` policy, a set-up that failed only with code 11 (and was
        rolled back cleanly) runs again after a backoff, without the pod's lock; a teardown of
        the pod that begins meanwhile ends the retries (see
        [`RetryPolicy`][cni_async.RetryPolicy]).

        :raises InvalidArgument: a bad container ID, interface name, static IP or MAC, or
            duplicate interface names (before any plugin runs)
        :raises NetworkNotFound: a requested network (or the default) has no valid configuration
        :raises NamespaceError: the pod's network namespace does not exist
        :raises PodNetworkError: one or more networks failed; each plugin error is kept (the
            last attempt's, with a ``retry`` policy)
        """
        async with self._operation("set_up_pod", pod):
            validate_container_id(pod.id)  # inside: observers see a refused call too
            return await with_retries(
                self._retry, self._pods, "set_up_pod", pod, lambda: set_up(self._pods, pod)
            )

    async def tear_down_pod(self, pod: PodNetwork) -> None:
        """Detach ``pod`` from its networks; best effort, every network and plugin is tried.

        With ``pod.networks`` empty the attachments are found in the cache by container ID and
        torn down with the cached configuration, even if its file is gone; with nothing cached,
        the default network gets DEL. A namespace that no longer exists is passed as an empty
        ``CNI_NETNS`` (the SPEC allows it), so IP leases are still released.

        With a ``retry`` policy, a teardown that failed only with code 11 runs again after a
        backoff (see [`RetryPolicy`][cni_async.RetryPolicy]).

        :raises PodNetworkError: some networks failed (all were tried; their cache entries stay
            so a retry or GC can finish)
        """
        async with self._operation("tear_down_pod", pod):
            validate_container_id(pod.id)  # inside: observers see a refused call too
            await with_retries(
                self._retry, self._pods, "tear_down_pod", pod, lambda: tear_down(self._pods, pod)
            )

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
            return await pod_status(self._pods, pod)

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
            source = self._source
            snapshot = source.snapshot
            if snapshot.default is None:
                snapshot = await source.reload_on_miss(snapshot)
            if snapshot.default is None:
                raise snapshot.missing_default(source.default_name)
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

        With a ``retry`` policy, a GC whose every failed step failed with code 11 runs again
        after a backoff (see [`RetryPolicy`][cni_async.RetryPolicy]).

        :raises MultipleErrors: some steps failed (each error is kept)
        """
        async with self._operation("gc"):
            valid = list(valid_pods)  # an iterator would be empty on a second attempt
            await with_retries(
                self._retry, self._pods, "gc", None, lambda: collect_garbage(self._pods, valid)
            )
