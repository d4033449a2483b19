"""Teardown of a pod: best effort, every network and every plugin tried.

The attachments come from the cache (and from an unfinished set-up's intent record) by
container ID, torn down with the configuration they were made with, even if its file is gone;
the pod's named networks without a cache entry, or the default network when nothing is cached,
are torn down with the current configuration. A namespace that is gone (or the host's) is
passed as an empty ``CNI_NETNS``, so IP leases are still released.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .._errors import CacheError, CNIError, NetworkNotFound, PodNetworkError
from .._libcni.cache import CacheEntry
from .context import PodContext
from .models import PodNetwork
from .planning import DEFAULT_INTERFACE_NAME, Attachment, requested

__all__ = ["tear_down"]

logger = logging.getLogger("cni_async.pod")


async def tear_down(ctx: PodContext, pod: PodNetwork) -> None:
    """``CNIPlugin.tear_down_pod`` once the call is admitted (see its docstring)."""
    ctx.supersede_set_ups(pod.id)
    async with ctx.pod_locks.hold((pod.namespace, pod.name)):
        netns = await ctx.usable_netns(pod.netns)
        recorded = await ctx.wait_for_set_up_elsewhere(pod.id)
        intent = recorded.attachments
        attachments, errors = await _targets(ctx, pod, netns, intent)
        errors += await ctx.detach_all(attachments)
        if errors:
            raise PodNetworkError(f"{pod.namespace}/{pod.name}", "teardown", errors)
        # What an unfinished set-up recorded for networks not torn down here stays.
        await ctx.settle_intent(pod.id, _not_in(intent, attachments), recorded=recorded.found)
        if logger.isEnabledFor(logging.INFO):  # the arguments cost more than the call
            logger.info(
                "tore down pod %s/%s (%s)",
                pod.namespace,
                pod.name,
                ", ".join(a.network.name for a in attachments) or "nothing attached",
            )


async def _targets(
    ctx: PodContext, pod: PodNetwork, netns: str, intent: list[CacheEntry]
) -> tuple[list[Attachment], list[CNIError]]:
    errors: list[CNIError] = []
    cached: dict[tuple[str, str], CacheEntry] = {(e.network_name, e.if_name): e for e in intent}
    try:
        # Completed attachments (with their results) win over the intent's records.
        cached.update(
            ((e.network_name, e.if_name), e)
            for e in await ctx.engine.get_cached_attachments(pod.id)
        )
    except CacheError as exc:
        # An unusable cache must not stop the DELs that need none: the networks the pod names
        # (or the default) still get one, and the error is reported with the rest.
        errors.append(exc)
    snapshot = ctx.source.snapshot
    wanted = requested(pod, cached)
    if not wanted and snapshot.default is not None:
        wanted = [(snapshot.default.name, DEFAULT_INTERFACE_NAME)]
    targets: list[Attachment] = []
    for name, ifname in dict.fromkeys(wanted):
        entry = cached.get((name, ifname))
        try:
            if entry is not None:
                targets.append(await ctx.attachment_from_cache(entry, snapshot, netns))
                continue
            network = snapshot.get(name)
            if network is None:
                raise NetworkNotFound(
                    "not in the cache and no valid configuration to tear it down with",
                    path=ctx.conf_dir,
                    network=name,
                )
            targets.append(Attachment(network, ctx.runtime_conf(pod, name, ifname, netns)))
        except CNIError as exc:
            exc.add_context(network=name)
            errors.append(exc)
    return targets, errors


def _not_in(intent: list[CacheEntry], attachments: Sequence[Attachment]) -> list[CacheEntry]:
    """The intent's records that none of ``attachments`` covers."""
    covered = {(a.network.name, a.rt.ifname) for a in attachments}
    return [e for e in intent if (e.network_name, e.if_name) not in covered]
