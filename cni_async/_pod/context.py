"""``PodContext``: what the pod operations (set-up, teardown, status, GC) share.

The engine and the configuration source they work through, the namespace seam, the per-pod
locks, the gate between set-ups and the GC verb, the set-ups in flight, and the steps more
than one operation takes: DEL of attachments, their parameters from the cache, the intent
record's settling, and waiting for a set-up that runs elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from .._confdir.snapshot import ConfigSnapshot
from .._confdir.source import ConfigSource
from .._errors import CNIError, ConfigError, NamespaceError, NetworkNotFound
from .._fanout import for_each
from .._libcni.cache import CacheEntry, RecordedIntent
from .._libcni.confload import with_directory_plugins
from .._libcni.engine import CNIEngine
from .._libcni.runtime import DEFAULT_TIMEOUTS, RuntimeConf
from .._observers.observer import Observers, OperationInfo
from .._spec.netconf import NetworkConfigList, parse_conflist
from .locks import KeyedLock, SharedGate
from .models import PodNetwork
from .namespaces import Namespaces, usable_netns
from .planning import Attachment, plan_networks, runtime_conf

__all__ = ["PodContext", "RetryStop", "operation_info"]

logger = logging.getLogger("cni_async.pod")


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


@dataclass(eq=False)
class RetryStop:
    """What ends one operation's retries early, and why (empty while nothing did)."""

    kind: str
    event: anyio.Event = field(default_factory=anyio.Event)
    reason: str = ""

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            self.event.set()


@dataclass(eq=False)
class PodContext:
    """The state and the shared steps of one plugin's pod operations."""

    engine: CNIEngine
    source: ConfigSource
    namespaces: Namespaces
    observers: Observers
    cleanup_timeout: float
    cni_args: tuple[tuple[str, str], ...]
    owner: str
    allow_host_netns: bool
    pod_locks: KeyedLock = field(default_factory=KeyedLock)
    # Set-ups pass shared; GC's verb passes alone, so that no ADD runs while the plugins are
    # told which attachments are in use.
    gc_gate: SharedGate = field(default_factory=SharedGate)
    # Container IDs with a set-up in flight: GC never takes what they recorded for stale.
    setting_up: dict[str, int] = field(default_factory=dict)
    # Operations under a retry policy, by container ID ("" for GC): a teardown stops the
    # retries of its pod's set-ups, closing the plugin stops them all (``_pod.retry``).
    retrying: dict[str, list[RetryStop]] = field(default_factory=dict)
    retries_stopped: bool = False

    @property
    def conf_dir(self) -> str:
        return self.source.conf_dir

    async def plan(self, pod: PodNetwork) -> list[tuple[NetworkConfigList, str]] | NetworkNotFound:
        """The (network, ifname) pairs of ``pod``, in request order, reloading once on a
        miss; the ``NetworkNotFound`` (not raised) when that did not help either."""
        source = self.source
        snapshot = source.snapshot
        plan = plan_networks(snapshot, pod, source.default_name)
        if isinstance(plan, NetworkNotFound):
            snapshot = await source.reload_on_miss(snapshot)
            plan = plan_networks(snapshot, pod, source.default_name)
        return plan

    def runtime_conf(self, pod: PodNetwork, network: str, ifname: str, netns: str) -> RuntimeConf:
        return runtime_conf(pod, network, ifname, netns, self.cni_args)

    async def usable_netns(self, netns: str) -> str:
        return await usable_netns(self.namespaces, netns, allow_host=self.allow_host_netns)

    def refuse_host_netns(self, netns: str) -> None:
        """:raises NamespaceError: ``netns`` is this process's or PID 1's (unless allowed)"""
        if not self.allow_host_netns and (who := self.namespaces.host_namespace(netns)):
            raise NamespaceError(
                f"{netns} is {who} network namespace, not a pod's; if that is really meant, "
                "pass allow_host_netns=True to CNIPlugin (cni-async pod: --allow-host-netns)",
                netns=netns,
            )

    def supersede_set_ups(self, container_id: str) -> None:
        """A teardown of ``container_id`` begins: set-ups of it that a retry policy would run
        again give up instead (those in a backoff at once)."""
        for retrying in self.retrying.get(container_id, ()):
            if retrying.kind == "set_up_pod":
                retrying.stop("the pod is being torn down")

    def stop_retries(self) -> None:
        """The plugin is closing: no operation is retried any more (those in a backoff give up
        at once). Call in the event loop's thread."""
        self.retries_stopped = True
        for waiting in self.retrying.values():
            for retrying in waiting:
                retrying.stop("the CNIPlugin is closing")

    async def settle_intent(
        self, container_id: str, earlier: list[CacheEntry], *, recorded: bool = True
    ) -> None:
        """The set-up is settled (attached and cached, or rolled back): keep only what an
        earlier, unfinished set-up left for teardown or GC to find. ``recorded=False``: no
        record was there when the caller looked, under the pod's lock, so none is removed."""
        cache = self.engine.cache
        if earlier:
            await cache.write_intent(container_id, earlier)
        elif recorded:
            await cache.remove_intent(container_id)

    async def wait_for_set_up_elsewhere(self, container_id: str) -> RecordedIntent:
        """Wait while a set-up of ``container_id`` runs elsewhere: in another process, or as
        plugins that outlived the runtime that started them (a DEL now would be undone when
        their ADD finishes, an ADD now would race theirs); then return its intent record as
        it is. Set-ups of this plugin cannot be running: the caller holds the pod lock. No
        checkpoint when nothing runs elsewhere.

        Waits at most as long as ADD may take (``timeouts["ADD"]``, 120 s by default); then
        the caller goes on, and the log says so.
        """
        cache = self.engine.cache
        recorded = cache.look_up_intent(container_id)
        if not recorded.in_use:
            return recorded
        limit = self.engine.timeouts.get("ADD") or DEFAULT_TIMEOUTS["ADD"]
        logger.info("waiting for a set-up of %s elsewhere to end", container_id)
        with anyio.move_on_after(limit):
            while cache.intent_in_use(container_id):
                await anyio.sleep(0.05)
            return cache.look_up_intent(container_id)
        logger.warning(
            "a set-up of %s elsewhere still runs after %s s; going on anyway",
            container_id,
            limit,
        )
        return cache.look_up_intent(container_id)

    async def attachment_from_cache(
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
                netns=(await self.usable_netns(entry.netns) if netns is None else netns),
                ifname=entry.if_name,
                args=tuple(entry.cni_args),
                capability_args=entry.capability_args,
            ),
        )

    async def detach_all(self, attachments: Sequence[Attachment]) -> list[CNIError]:
        """DEL every attachment concurrently; the failures, in order."""
        errors: dict[int, CNIError] = {}
        await self.detach_into(attachments, errors, set())
        return [errors[i] for i in sorted(errors)]

    async def detach_into(
        self, attachments: Sequence[Attachment], errors: dict[int, CNIError], finished: set[int]
    ) -> None:
        """DEL every attachment concurrently; record failures by index in ``errors`` and every
        DEL that ran to its end (failed or not) in ``finished``, as they happen."""

        async def detach(index: int) -> None:
            a = attachments[index]
            try:
                await self.engine.del_network_list(a.network, a.rt, keep_going=True)
            except CNIError as exc:
                exc.add_context(network=a.network.name)
                errors[index] = exc
            finished.add(index)

        await for_each(len(attachments), detach)
