"""Retries of pod operations that plugins asked to try again later (CNI error code 11).

CNI 1.1 gives plugins ``TryAgainLater`` (code 11) for a transient condition, and leaves the retry
to the runtime. With a [`RetryPolicy`][cni_async.RetryPolicy],
[`CNIPlugin`][cni_async.CNIPlugin] re-runs a set-up, teardown or GC that failed with nothing but
code 11, after a jittered exponential backoff, as long as attempts are left and the caller's
deadline is not passed by the wait. Every attempt is the whole operation, run exactly as without
a policy: it takes the pod's lock and releases it (a failed set-up rolled back) before the wait,
so the wait never blocks other operations on the pod.
"""

# No ``from __future__ import annotations`` here: msgspec resolves string annotations in the
# namespace of the class's ``__module__``, which the package sets to ``cni_async``.
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import msgspec

from .._errors import ERR_TRY_AGAIN_LATER, CNIError, MultipleErrors, PodNetworkError
from .._spec.validation import check_int, check_number
from .context import PodContext, RetryStop, operation_info
from .models import PodNetwork

__all__ = ["RetryPolicy", "is_try_again_later", "with_retries"]

logger = logging.getLogger("cni_async.pod")

_T = TypeVar("_T")


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When [`CNIPlugin`][cni_async.CNIPlugin] retries an operation a plugin asked to try again
    later: ``CNIPlugin(..., retry=RetryPolicy())``. Without one (the default) nothing is retried.

    Only [`set_up_pod`][cni_async.CNIPlugin.set_up_pod],
    [`tear_down_pod`][cni_async.CNIPlugin.tear_down_pod] and [`gc`][cni_async.CNIPlugin.gc] are
    retried, and only when every error of the failed attempt is a
    [`TryAgainLater`][cni_async.TryAgainLater] (CNI error code 11): any other code, a
    cancellation, or a set-up whose rollback failed is never retried. The wait before retry
    ``n`` (``n = 1`` before the second attempt) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, shortened by a random fraction of
    up to ``jitter`` of itself (proportional jitter: ``jitter=1.0`` is "full jitter", anywhere
    from 0 to the whole delay; ``0.0`` is none). A wait that would end after the caller's
    deadline (``anyio.fail_after``, ``move_on_after``, ``BlockingCNIPlugin``'s ``timeout``) is
    not started: the last error is raised at once. See *Retries* in the documentation.

    Checked at construction: a field of the wrong type raises ``TypeError``, a value out of
    range ``ValueError``, each naming the field.

    :ivar max_attempts: attempts in all, the first one included (``1``: never retry)
    :ivar initial_delay: seconds before the first retry, before jitter (``>= 0``)
    :ivar multiplier: how much each delay grows over the one before (``>= 1``)
    :ivar max_delay: the longest delay, in seconds, before jitter (``>= initial_delay``)
    :ivar jitter: the largest fraction of a delay taken off at random, ``0.0``..``1.0``
    :raises TypeError: a field is not a number (or ``max_attempts`` not an ``int``)
    :raises ValueError: a field is out of range
    """

    max_attempts: int = 4
    initial_delay: float = 0.25
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        check_int("RetryPolicy", "max_attempts", self.max_attempts, 1, 1_000_000)
        check_number("RetryPolicy", "initial_delay", self.initial_delay, 0.0)
        check_number("RetryPolicy", "multiplier", self.multiplier, 1.0)
        check_number("RetryPolicy", "max_delay", self.max_delay, 0.0)
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"RetryPolicy.max_delay must be >= initial_delay ({self.initial_delay!r}), "
                f"got {self.max_delay!r}"
            )
        check_number("RetryPolicy", "jitter", self.jitter, 0.0, 1.0)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (``1`` before the second attempt),
        jitter included: a new random draw on every call.

        :raises ValueError: ``retry`` is less than 1
        """
        if retry < 1:
            raise ValueError(f"retry must be >= 1, got {retry}")
        try:
            base = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        except OverflowError:
            base = self.max_delay
        return base * (1.0 - self.jitter * random.random())


def is_try_again_later(error: BaseException) -> bool:
    """Whether ``error`` is code 11 and nothing else: a plugin's ``TryAgainLater``, or a
    ``MultipleErrors`` (a pod's networks, a network's plugins, GC's steps) all of whose errors
    are, and, for a set-up, whose rollback was clean."""
    if isinstance(error, PodNetworkError) and error.rollback_errors:
        return False  # something may still be attached: that is for teardown or GC
    if isinstance(error, MultipleErrors):
        return bool(error.errors) and all(map(is_try_again_later, error.errors))
    return isinstance(error, CNIError) and error.code == ERR_TRY_AGAIN_LATER


@contextmanager
def _registered(ctx: PodContext, kind: str, container_id: str) -> Iterator[RetryStop]:
    """What ends the retries of an operation of ``kind`` on ``container_id`` early, while the
    block runs (a teardown of the pod, for a set-up; the plugin closing, for any)."""
    stop = RetryStop(kind)
    waiting = ctx.retrying.setdefault(container_id, [])
    waiting.append(stop)
    try:
        yield stop
    finally:
        waiting.remove(stop)
        if not waiting and ctx.retrying.get(container_id) is waiting:
            del ctx.retrying[container_id]


async def with_retries(
    policy: RetryPolicy | None,
    ctx: PodContext,
    kind: str,
    pod: PodNetwork | None,
    attempt: Callable[[], Awaitable[_T]],
) -> _T:
    """Run ``attempt()`` once, then again after each failure ``policy`` allows; return what
    the first successful attempt returns, or raise the last attempt's error.

    A set-up (``kind == "set_up_pod"``) is not retried once a teardown of the same container
    has begun, so a pod torn down while its set-up waited is not attached again; no operation
    is retried once the plugin is closing. Either way the last error is raised.
    """
    if policy is None or policy.max_attempts == 1:
        return await attempt()
    with _registered(ctx, kind, "" if pod is None else pod.id) as stop:
        return await _retry(policy, ctx, kind, pod, attempt, stop)


def _stopped(ctx: PodContext, stop: RetryStop) -> bool:
    if ctx.retries_stopped:  # shutdown() sets only the flag: it may run outside the loop
        stop.stop("the CNIPlugin is closing")
    return bool(stop.reason)


async def _retry(
    policy: RetryPolicy,
    ctx: PodContext,
    kind: str,
    pod: PodNetwork | None,
    attempt: Callable[[], Awaitable[_T]],
    stop: RetryStop,
) -> _T:
    what = kind if pod is None else f"{kind} of {pod.namespace}/{pod.name}"
    number = 1
    while True:
        try:
            return await attempt()
        except CNIError as exc:
            if not is_try_again_later(exc):
                raise
            if number >= policy.max_attempts:
                exc.add_note(f"cni_async: gave up after {number} attempts")
                logger.info("%s: try again later, but gave up after %d attempts", what, number)
                raise
            if _stopped(ctx, stop):
                exc.add_note(f"cni_async: not retried: {stop.reason}")
                raise
            delay = policy.delay(number)
            if anyio.current_time() + delay >= anyio.current_effective_deadline():
                exc.add_note(f"cni_async: not retried: the deadline is under {delay:.3g} s away")
                logger.info(
                    "%s: try again later, but the deadline comes before a retry in %.3g s",
                    what,
                    delay,
                )
                raise
            error = exc
        # Outside the handler: the wait and the next attempt are not in the error's context.
        logger.info(
            "%s: try again later (attempt %d of %d); retrying in %.3g s",
            what,
            number,
            policy.max_attempts,
            delay,
        )
        ctx.observers.retrying(operation_info(kind, pod), number, delay, error)
        with anyio.move_on_after(delay):
            await stop.event.wait()
        if _stopped(ctx, stop):
            error.add_note(f"cni_async: not retried: {stop.reason}")
            raise error
        number += 1
