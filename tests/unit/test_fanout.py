"""The library's one fan-out: every index run once, at most ``limit`` at a time."""

from __future__ import annotations

import anyio
import pytest

from cni_async._testing import for_each

pytestmark = pytest.mark.anyio


async def record(count: int, limit: int | None) -> tuple[list[int], int]:
    started: list[int] = []
    running = peak = 0

    async def run(index: int) -> None:
        nonlocal running, peak
        started.append(index)
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001 * (index % 3))
        running -= 1

    await for_each(count, run, limit=limit)
    return started, peak


@pytest.mark.parametrize("limit", [None, 1, 4, 64, 500])
async def test_every_index_runs_once(limit: int | None) -> None:
    started, peak = await record(200, limit)
    assert sorted(started) == list(range(200))
    if limit is None or limit >= 200:
        assert peak == 200
    else:
        assert peak == limit
        assert started[:limit] == list(range(limit))  # taken in order


async def test_a_failure_cancels_the_rest_and_propagates() -> None:
    ran: list[int] = []

    async def run(index: int) -> None:
        if index == 3:
            raise ValueError("boom")
        await anyio.sleep(0.01)
        ran.append(index)

    with pytest.raises(ExceptionGroup) as caught:
        await for_each(100, run, limit=4)
    assert caught.group_contains(ValueError)
    assert len(ran) < 10  # nothing started after the failure


async def test_a_single_index_is_awaited_directly() -> None:
    assert await record(1, 4) == ([0], 1)
