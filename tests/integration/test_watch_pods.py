"""Reloads under pod churn, in real namespaces (the rest of the watcher's tests are unit tests)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from cni_async import CNIPlugin, NetAttachment, PodNetwork

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake(dirs: dict[str, Path]) -> FakePlugin:
    return FakePlugin(dirs["bin"], "fa")


def plugins() -> list[dict[str, str]]:
    return [{"type": "fa"}]


@pytest.mark.privileged
async def test_reloads_never_block_pods(
    dirs: dict[str, Path], fake: FakePlugin, net: Sandbox
) -> None:
    fake.on("ADD", sleep=0.2)
    write_conflist(dirs["conf"], "net1", plugins(), filename="10-net1.conflist")
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), debounce=0.01
    ) as cni:
        stop = anyio.Event()

        async def churn_config() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                write_conflist(dirs["conf"], "net1", plugins(), filename="10-net1.conflist", x=i)
                write_conflist(dirs["conf"], f"extra{i % 3}", plugins())
                await anyio.sleep(0.02)

        async def pod_cycle(i: int) -> None:
            pod = PodNetwork(
                f"p{i}", "ns", f"{net.prefix}-{i}", "u", net.netns(f"p{i}"), [NetAttachment("net1")]
            )
            with anyio.fail_after(10):
                await cni.set_up_pod(pod)
                await cni.tear_down_pod(pod)

        async with anyio.create_task_group() as tg:
            tg.start_soon(churn_config)
            async with anyio.create_task_group() as pods:
                for i in range(12):
                    pods.start_soon(pod_cycle, i)
            stop.set()
        assert cni.watcher is not None and cni.watcher.reloads > 3
    assert len(fake.calls("ADD")) == len(fake.calls("DEL")) == 12
    assert os.listdir(dirs["cache"] / "results") == []
