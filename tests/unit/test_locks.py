"""The pod API's locks: the shared/exclusive gate between set-ups and GC's verb."""

from __future__ import annotations

import anyio
import pytest

from cni_async._testing import SharedGate

pytestmark = pytest.mark.anyio


async def test_shared_holders_overlap_and_exclusive_waits_for_them() -> None:
    gate = SharedGate()
    log: list[str] = []

    async def shared(name: str, hold: float) -> None:
        async with gate.shared():
            log.append(f"{name} in")
            await anyio.sleep(hold)
            log.append(f"{name} out")

    async def exclusive() -> None:
        await anyio.sleep(0.05)
        async with gate.exclusive():
            log.append("x in")
            await anyio.sleep(0.05)
            log.append("x out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(shared, "a", 0.2)
        tg.start_soon(shared, "b", 0.1)
        tg.start_soon(exclusive)
    # Trio starts tasks in no fixed order: a and b may come in either way.
    assert sorted(log[:2]) == ["a in", "b in"]
    assert log[2:] == ["b out", "a out", "x in", "x out"]


async def test_a_waiting_exclusive_holder_keeps_new_shared_ones_out() -> None:
    gate = SharedGate()
    log: list[str] = []

    async def shared(name: str, delay: float) -> None:
        await anyio.sleep(delay)
        async with gate.shared():
            log.append(name)
            await anyio.sleep(0.1)

    async def exclusive() -> None:
        await anyio.sleep(0.02)
        async with gate.exclusive():
            log.append("x")

    async with anyio.create_task_group() as tg:
        tg.start_soon(shared, "first", 0)
        tg.start_soon(exclusive)
        tg.start_soon(shared, "late", 0.05)  # arrives while x waits for "first"
    assert log == ["first", "x", "late"]


async def test_cancelled_exclusive_wait_opens_the_gate_again() -> None:
    gate = SharedGate()
    async with gate.shared():
        with anyio.move_on_after(0.05) as scope:
            async with gate.exclusive():
                pytest.fail("got the gate while it was held shared")
        assert scope.cancelled_caught
        with anyio.fail_after(1):
            async with gate.shared():  # not kept out by the abandoned exclusive wait
                pass
    with anyio.fail_after(1):
        async with gate.exclusive():
            pass
