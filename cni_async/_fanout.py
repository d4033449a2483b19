"""One task per item, the errors collected by index: the library's single fan-out.

Networks of a pod, plugins of a list, stale attachments of a GC: each is worked on at once,
and each failure is kept in the order of the items, not of their finishing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio

from ._errors import CNIError

__all__ = ["errors_by_index", "for_each"]

T = TypeVar("T")


async def for_each(
    count: int, run: Callable[[int], Coroutine[Any, Any, None]], *, limit: int | None = None
) -> None:
    """Run ``run(index)`` for every index at once, or with ``limit``, in at most that many tasks
    that take the indices in order; a single one is awaited directly (a task group costs more
    than the whole of a fast plugin's run). The first exception that is not caught in ``run``
    cancels the others and propagates."""
    if count == 1:
        await run(0)
        return
    if limit is not None and limit < count:
        indices = iter(range(count))  # shared: each task takes the next index when it is free

        async def take() -> None:
            for index in indices:
                await run(index)

        async with anyio.create_task_group() as tg:
            for _ in range(limit):
                tg.start_soon(take)
        return
    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(run, index)


async def errors_by_index(
    items: Sequence[T], run: Callable[[int, T], Awaitable[object]]
) -> dict[int, CNIError]:
    """Run ``run(index, item)`` for every item at once; the [`CNIError`][cni_async.CNIError]
    each raised, by the item's index (a missing index succeeded). Other exceptions propagate."""
    errors: dict[int, CNIError] = {}

    async def one(index: int) -> None:
        try:
            await run(index, items[index])
        except CNIError as exc:
            errors[index] = exc

    await for_each(len(items), one)
    return errors
