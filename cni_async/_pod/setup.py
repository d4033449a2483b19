"""Set-up of a pod: every network attached at once, all of them rolled back on any failure.

``lo`` comes up and the set-up's intent record is written (locked, fsync'd) in one worker-thread
hop before the first plugin runs; then one task per network runs its ADD chain. If any network
fails, or the call is cancelled, every network that was started gets DEL in a shielded scope
with its own deadline (``cleanup_timeout``), and the error or the cancellation propagates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable

import anyio
import anyio.abc

from .._errors import CNIError, NetworkNotFound, PodNetworkError
from .._libcni.cache import CacheEntry
from .._libcni.engine import CNIEngine
from .._libcni.exec import held_lock
from .._libcni.freeing import free_later
from .._spec.results import Result
from .context import PodContext, operation_info
from .models import NetResult, PodNetwork
from .planning import Attachment, as_config_version, as_current

__all__ = ["set_up"]

logger = logging.getLogger("cni_async.pod")


async def set_up(ctx: PodContext, pod: PodNetwork) -> list[NetResult]:
    """``CNIPlugin.set_up_pod`` once the call is admitted (see its docstring)."""
    ctx.refuse_host_netns(pod.netns)
    plan = await ctx.plan(pod)
    if isinstance(plan, NetworkNotFound):
        raise plan
    attachments = [
        Attachment(net, ctx.runtime_conf(pod, net.name, ifname, pod.netns)) for net, ifname in plan
    ]
    async with ctx.pod_locks.hold((pod.namespace, pod.name)):
        started = time.perf_counter()
        # A set-up of this container still running elsewhere (another process, or the plugins
        # a killed runtime left) would race this one's ADDs: let it end first.
        recorded = await ctx.wait_for_set_up_elsewhere(pod.id)
        async with ctx.gc_gate.shared():
            ctx.setting_up[pod.id] = ctx.setting_up.get(pod.id, 0) + 1
            try:
                earlier, fd = await _record_intent(
                    ctx, pod.id, attachments, pod.netns, recorded.attachments
                )
                held = _HeldLock(fd)
                # The plugins inherit the intent's lock: should this process die, nobody
                # takes the set-up for abandoned while one of them still runs.
                token = held_lock.set(fd)
                try:
                    results = await _attach_all(ctx, pod, attachments, earlier, held)
                finally:
                    held_lock.reset(token)
                    held.let_go()
            finally:
                if ctx.setting_up[pod.id] == 1:
                    del ctx.setting_up[pod.id]
                else:
                    ctx.setting_up[pod.id] -= 1
    if logger.isEnabledFor(logging.INFO):  # the arguments cost more than the call
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
    ctx: PodContext,
    container_id: str,
    attachments: list[Attachment],
    netns: str,
    recorded: list[CacheEntry],
) -> tuple[list[CacheEntry], int]:
    """Bring ``lo`` up and durably record what this set-up will attach (one worker-thread hop
    for both); return what an earlier, unfinished set-up of the same container recorded
    (``recorded``) and this one does not cover, and the descriptor holding the record's lock."""
    ours = {(a.network.name, a.rt.ifname) for a in attachments}
    earlier = [e for e in recorded if (e.network_name, e.if_name) not in ours]
    with ctx.namespaces.loopback_up(netns) as bring_lo_up:
        held = await ctx.engine.cache.write_intent_held(
            container_id,
            [*earlier, *(CNIEngine.cache_entry(a.network, a.rt, None) for a in attachments)],
            before=bring_lo_up,
        )
    return earlier, held


class _HeldLock:
    """The descriptor holding the intent record's lock, let go of once, by whichever thread
    gets there first: the cache write's worker thread, right after it removed the record, or
    the set-up itself when that did not happen.

    Once the record is settled (removed, or replaced by another), the descriptor is the last
    hold on a file with no name, and closing it frees the file, which waits for the disk: it
    goes to the freeing thread, which nobody waits for. A record that stays (a set-up that
    could not settle it) is closed at once, so that its lock is free when the set-up ends.
    """

    __slots__ = ("fd", "settled")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.settled = False

    def let_go(self) -> None:
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        if self.settled:
            free_later(fd)
            return
        # Nothing was written through it: an error closing it means nothing, and must not
        # turn a set-up that worked into one that rolls back.
        with contextlib.suppress(OSError):
            os.close(fd)


async def _attach_all(
    ctx: PodContext,
    pod: PodNetwork,
    attachments: list[Attachment],
    earlier: list[CacheEntry],
    held: _HeldLock,
) -> list[Result]:
    results: dict[int, Result] = {}
    errors: dict[int, CNIError] = {}
    started: list[int] = []

    async def attach(index: int, tg: anyio.abc.TaskGroup) -> None:
        started.append(index)
        a = attachments[index]
        try:
            results[index] = await ctx.engine.add_network_list(a.network, a.rt)
        except CNIError as exc:
            errors[index] = exc
            tg.cancel_scope.cancel()  # stop the siblings; they are rolled back below

    settled = False
    try:
        if len(attachments) == 1:
            # One network: no task group, and the intent is dropped (and its lock let go) in
            # the cache write's worker thread, once the entry is durable (neither can fail).
            # The write returns only once that thread is done, cancelled or not.
            started.append(0)
            a = attachments[0]
            remove = None if earlier else _remover(ctx, pod.id, held)
            try:
                results[0] = result = await ctx.engine.add_chain(a.network, a.rt)
                await ctx.engine.cache.write(
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
                f"{pod.namespace}/{pod.name}", "set-up", [errors[i] for i in sorted(errors)]
            )
        if not settled:
            # Inside the try: a cancellation or a failed intent write here still rolls the
            # networks back, as a set-up that raises promises.
            await ctx.settle_intent(pod.id, earlier)
            held.settled = True
    except BaseException as exc:
        rolled_back = [attachments[i] for i in sorted(started)]
        rollback_errors = await _rollback(ctx, pod.id, rolled_back, earlier, held)
        if rolled_back:
            ctx.observers.rolled_back(
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


def _remover(ctx: PodContext, container_id: str, held: _HeldLock) -> Callable[[], None]:
    remove_intent = ctx.engine.cache.intent_remover(container_id)

    def remove() -> None:
        remove_intent()
        held.settled = True
        held.let_go()

    return remove


async def _rollback(
    ctx: PodContext,
    container_id: str,
    attachments: list[Attachment],
    earlier: list[CacheEntry],
    held: _HeldLock,
) -> list[CNIError]:
    """DEL every attachment, shielded, within ``cleanup_timeout``; return the failures, one per
    network whose DEL failed or did not finish in time.

    The intent is kept when anything failed, so a later teardown or GC finds it.
    """
    failed: dict[int, CNIError] = {}
    finished: set[int] = set()
    with anyio.move_on_after(ctx.cleanup_timeout, shield=True):
        await ctx.detach_into(attachments, failed, finished)
        if not failed:
            try:
                await ctx.settle_intent(container_id, earlier)
                held.settled = True
            except CNIError as exc:
                # Every DEL worked: the intent, still naming them, only makes a later teardown
                # or GC DEL them again. The set-up's own error goes on.
                logger.error("could not update %s's intent after a rollback: %s", container_id, exc)
    for index, a in enumerate(attachments):
        if index not in finished:  # stopped by cleanup_timeout
            failed[index] = CNIError(
                f"rollback DEL did not finish within {ctx.cleanup_timeout} s",
                verb="DEL",
                network=a.network.name,
            )
    errors = [failed[i] for i in sorted(failed)]
    for error in errors:
        logger.error("rollback DEL failed: %s", error)
    return errors
