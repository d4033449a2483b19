"""Garbage collection: the stale attachments of this plugin's networks, then the GC verb.

Only networks with a valid configuration are collected, each on its own, as libcni's
``GCNetworkList`` does. An attachment is stale when its container is not among the valid pods,
no set-up of it is in flight (here, or in another process that holds its intent record's lock),
and, with an ``owner``, when it carries that owner. Stale attachments get DEL with their cached
configuration, under their pod's lock; then, without an owner, each network of version 1.1.0 and
later gets the GC verb with the attachments in use, while no set-up runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from .._confdir.snapshot import ConfigSnapshot
from .._errors import CNIError, MultipleErrors, NetworkNotFound
from .._fanout import for_each
from .._libcni.cache import CacheEntry
from .context import PodContext
from .models import PodNetwork
from .planning import plan_networks

__all__ = ["collect_garbage"]

_Attachment = tuple[str, str, str]  # container ID, network, ifname
# Stale pods collected at once: more than enough to keep every plugin slot busy. A task per
# stale pod instead held about 12 KiB each while waiting for a slot (124 MiB for 10 000).
_COLLECTING: Final = 64


async def collect_garbage(ctx: PodContext, valid_pods: Iterable[PodNetwork]) -> None:
    """``CNIPlugin.gc`` once the call is admitted (see its docstring)."""
    valid = list(valid_pods)
    valid_ids = {p.id for p in valid}
    snapshot = ctx.source.snapshot
    cache = ctx.engine.cache
    entries = await ctx.engine.get_cached_attachments()
    intents = await cache.intents()
    known = {(e.container_id, e.network_name, e.if_name) for e in entries}
    # A locked record is a set-up in flight (in another process, say), or one whose plugins
    # outlived their runtime: none of its container's attachments is stale, cached ones
    # included, and all count as in use.
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
            or entry.container_id in ctx.setting_up
            or entry.container_id in in_flight
            or (ctx.owner and entry.owner != ctx.owner)
        ):
            continue
        args = dict(entry.cni_args)
        key = (args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", entry.container_id))
        stale.setdefault(key, []).append(entry)
    errors: list[CNIError] = []
    groups = list(stale.items())

    async def collect(index: int) -> None:
        key, group = groups[index]
        errors.extend(await _collect_pod(ctx, key, group, snapshot, intents))

    await for_each(len(groups), collect, limit=_COLLECTING)
    found_stale = {(e.container_id, e.network_name, e.if_name) for _, g in groups for e in g}
    if not ctx.owner:  # with one, the verb would free what others have in flight
        errors += await _gc_verb(ctx, snapshot, valid, found_stale)
    if errors:
        raise MultipleErrors("garbage collection failed", errors)


async def _collect_pod(
    ctx: PodContext,
    key: tuple[str, str],
    group: list[CacheEntry],
    snapshot: ConfigSnapshot,
    intents: dict[str, list[CacheEntry]],
) -> list[CNIError]:
    """DEL one pod's stale attachments under its lock; settle its intent records if all went."""
    async with ctx.pod_locks.hold(key):
        targets = []
        failed: list[CNIError] = []
        for entry in group:
            try:
                targets.append(await ctx.attachment_from_cache(entry, snapshot))
            except CNIError as exc:
                failed.append(exc)
        failed.extend(await ctx.detach_all(targets))
        if not failed:
            done = {(e.network_name, e.if_name) for e in group}
            for cid in {e.container_id for e in group} & set(intents):
                # Records GC left alone (a disableGC network) stay for later.
                await ctx.settle_intent(
                    cid, [e for e in intents[cid] if (e.network_name, e.if_name) not in done]
                )
        return failed


async def _gc_verb(
    ctx: PodContext,
    snapshot: ConfigSnapshot,
    valid: list[PodNetwork],
    found_stale: set[_Attachment],
) -> list[CNIError]:
    """Send GC to every network, with the attachments in use; return what failed.

    No set-up runs while the plugins are told what is in use. What is recorded now and was not
    found stale (a pod set up since GC began, say) is in use, as is what the valid pods ask for.
    """
    errors: list[CNIError] = []
    valid_ids = {p.id for p in valid}
    async with ctx.gc_gate.exclusive():
        in_use: dict[str, set[tuple[str, str]]] = {}
        now = [
            *await ctx.engine.get_cached_attachments(),
            *(e for found in (await ctx.engine.cache.intents()).values() for e in found),
        ]
        for entry in now:
            attachment = (entry.container_id, entry.network_name, entry.if_name)
            if entry.container_id in valid_ids or attachment not in found_stale:
                in_use.setdefault(entry.network_name, set()).add(
                    (entry.container_id, entry.if_name)
                )
        for pod in valid:
            try:
                plan = plan_networks(snapshot, pod, ctx.source.default_name)
            except CNIError as exc:  # this pod's request is invalid; GC goes on
                errors.append(exc)
                continue
            if not isinstance(plan, NetworkNotFound):
                for network, ifname in plan:
                    in_use.setdefault(network.name, set()).add((pod.id, ifname))
        for network in snapshot.networks:  # gc_plugins skips disableGC and pre-1.1.0
            try:
                await ctx.engine.gc_plugins(network, sorted(in_use.get(network.name, ())))
            except MultipleErrors as exc:
                errors.extend(exc.errors)
    return errors
