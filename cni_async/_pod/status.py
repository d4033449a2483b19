"""Status of a pod: ``lo`` up, and each network CHECKed where its version allows.

Each network gets CHECK from 0.4.0 on (unless its configuration disables it); the cached result
is returned, or, with none cached, the interface's MAC and global addresses as the namespace
reports them. A network whose configuration is gone is checked with the configuration its
attachment was cached with, as ocicni does.
"""

from __future__ import annotations

from .._errors import CNIError, NamespaceError, NetworkNotFound, PodNetworkError
from .._fanout import errors_by_index
from .._spec.results import Interface, IPConfig, Result100
from .._spec.versions import CURRENT_VERSION, version_at_least_or_false
from .context import PodContext
from .models import NetResult, PodNetwork
from .planning import Attachment, as_config_version, as_current, requested

__all__ = ["pod_status"]


async def pod_status(ctx: PodContext, pod: PodNetwork) -> list[NetResult]:
    """``CNIPlugin.get_pod_network_status`` once the call is admitted (see its docstring)."""
    ctx.refuse_host_netns(pod.netns)
    async with ctx.pod_locks.hold((pod.namespace, pod.name)):
        attachments = await _targets(ctx, pod)
        if not await ctx.namespaces.loopback_is_up(pod.netns):
            raise NamespaceError(
                f"loopback is not up in the network namespace of pod {pod.namespace}/{pod.name}",
                netns=pod.netns,
            )
        results: dict[int, NetResult] = {}

        async def status(index: int, a: Attachment) -> None:
            try:
                results[index] = await _network_status(ctx, a)
            except CNIError as exc:
                exc.add_context(network=a.network.name)
                raise

        errors = await errors_by_index(attachments, status)
    if errors:
        raise PodNetworkError(
            f"{pod.namespace}/{pod.name}", "status", [errors[i] for i in sorted(errors)]
        )
    return [results[i] for i in range(len(attachments))]


async def _targets(ctx: PodContext, pod: PodNetwork) -> list[Attachment]:
    """What status checks: ``pod``'s networks as configured, or, for a network whose
    configuration is gone, as its attachment was cached.

    :raises NetworkNotFound: a network has neither a configuration nor a cached attachment
    """
    plan = await ctx.plan(pod)
    if not isinstance(plan, NetworkNotFound):
        return [
            Attachment(net, ctx.runtime_conf(pod, net.name, ifname, pod.netns))
            for net, ifname in plan
        ]
    snapshot = ctx.source.snapshot
    cached = {
        (e.network_name, e.if_name): e for e in await ctx.engine.get_cached_attachments(pod.id)
    }
    wanted = requested(pod, cached)
    if not wanted:
        raise plan
    targets = []
    for name, ifname in wanted:
        network = snapshot.get(name)
        entry = cached.get((name, ifname))
        if network is not None:
            targets.append(Attachment(network, ctx.runtime_conf(pod, name, ifname, pod.netns)))
        elif entry is not None:
            targets.append(await ctx.attachment_from_cache(entry, snapshot, pod.netns))
        else:
            raise NetworkNotFound(
                "no valid configuration and no cached attachment",
                path=ctx.conf_dir,
                network=name,
            )
    return targets


async def _network_status(ctx: PodContext, a: Attachment) -> NetResult:
    if version_at_least_or_false(a.network.cni_version, "0.4.0") and not a.network.disable_check:
        cached = await ctx.engine.check_network_list(a.network, a.rt)
    else:
        cached = await ctx.engine.get_cached_result(a.network, a.rt)
    if cached is None:
        state = await ctx.namespaces.interface_state(a.rt.netns, a.rt.ifname)
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
