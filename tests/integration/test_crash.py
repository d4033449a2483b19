"""Crash consistency: a process killed in the middle of a set-up leaves an intent behind, and a
fresh CNIPlugin's teardown or GC removes everything the dead one attached."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from cni_async import CacheEntry, CNIPlugin, NetAttachment, PodNetwork

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist
from ..support.procs import alive, wait_dead

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]

DIE_DURING_SETUP = """
import anyio, sys
from cni_async import CNIPlugin, NetAttachment, PodNetwork

async def main() -> None:
    conf, bin_dir, cache, netns, cid = sys.argv[1:6]
    async with CNIPlugin(conf, [bin_dir], cache, watch=False) as cni:
        pod = PodNetwork("victim", "ns", cid, "uid", netns,
                         [NetAttachment("fast"), NetAttachment("slow")])
        await cni.set_up_pod(pod)

anyio.run(main)
"""


def kill_group(pid: int) -> None:
    """End a plugin the killed runtime left running (we started it, through that runtime)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    wait_dead(pid)


@pytest.mark.parametrize("cleanup", ["tear_down_pod", "gc"])
async def test_sigkill_mid_setup_is_cleaned_up(
    dirs: dict[str, Path], net: Sandbox, cleanup: str
) -> None:
    fast, slow = FakePlugin(dirs["bin"], "fast-p"), FakePlugin(dirs["bin"], "slow-p")
    slow.on("ADD", sleep=60)
    write_conflist(dirs["conf"], "fast", [{"type": "fast-p"}])
    write_conflist(dirs["conf"], "slow", [{"type": "slow-p"}])
    netns = net.netns("victim")
    cid = f"{net.prefix}-victim"
    runtime = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DIE_DURING_SETUP,
            str(dirs["conf"]),
            str(dirs["bin"]),
            str(dirs["cache"]),
            netns,
            cid,
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not (slow.calls("ADD") and fast.calls("ADD")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the fast network finish its ADD and its cache entry
        runtime.send_signal(signal.SIGKILL)
        runtime.wait()
    finally:
        for call in slow.calls("ADD"):
            kill_group(call["pid"])
    assert runtime.returncode == -signal.SIGKILL
    [intent] = os.listdir(dirs["cache"] / "cni_async-intents")
    recorded = json.loads((dirs["cache"] / "cni_async-intents" / intent).read_text())
    assert {a["networkName"] for a in recorded["attachments"]} == {"fast", "slow"}

    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        if cleanup == "tear_down_pod":
            await cni.tear_down_pod(PodNetwork("victim", "ns", cid, "uid", netns))
        else:
            await cni.gc([])
    # The half-finished ADD (slow) got its DEL too, not only the cached one.
    assert len(fast.calls("DEL")) == 1
    assert len(slow.calls("DEL")) == 1
    assert os.listdir(dirs["cache"] / "cni_async-intents") == []
    assert os.listdir(dirs["cache"] / "results") == []


async def test_intent_of_an_earlier_attempt_survives_a_new_setup(
    dirs: dict[str, Path], net: Sandbox
) -> None:
    a, b = FakePlugin(dirs["bin"], "pa"), FakePlugin(dirs["bin"], "pb")
    write_conflist(dirs["conf"], "neta", [{"type": "pa"}])
    write_conflist(dirs["conf"], "netb", [{"type": "pb"}])
    netns = net.netns("p")
    cid = f"{net.prefix}-p"
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        # An earlier attempt on netb left an intent (as a crash would).
        await cni.engine.cache.write_intent(
            cid, [_entry(cid, "netb", "eth0", netns, (dirs["conf"] / "netb.conflist").read_bytes())]
        )
        await cni.set_up_pod(PodNetwork("p", "ns", cid, "u", netns, [NetAttachment("neta")]))
        [left] = await cni.engine.cache.intents()
        assert left == cid
        await cni.tear_down_pod(PodNetwork("p", "ns", cid, "u", netns))
        assert len(a.calls("DEL")) == 1 and len(b.calls("DEL")) == 1
        assert await cni.engine.cache.intents() == {}


def _entry(cid: str, network: str, ifname: str, netns: str, config: bytes) -> CacheEntry:
    return CacheEntry(
        container_id=cid, config=config, if_name=ifname, network_name=network, netns=netns
    )


async def test_a_set_up_in_another_runtime_is_not_collected(
    dirs: dict[str, Path], net: Sandbox
) -> None:
    """Two CNIPlugins on one cache directory (a runtime and `cni-async pod`, or the runtime
    across a restart): GC in one never takes the other's set-up in flight for abandoned."""
    fast, slow = FakePlugin(dirs["bin"], "fast-p"), FakePlugin(dirs["bin"], "slow-p")
    slow.on("ADD", sleep=1.5)
    write_conflist(dirs["conf"], "fast", [{"type": "fast-p"}])
    write_conflist(dirs["conf"], "slow", [{"type": "slow-p"}])
    pod = PodNetwork(
        "p", "ns", f"{net.prefix}-p", "uid", net.netns("p"),
        [NetAttachment("fast"), NetAttachment("slow")],
    )  # fmt: skip
    args = (str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]))
    async with CNIPlugin(*args, watch=False) as one, CNIPlugin(*args, watch=False) as other:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one.set_up_pod, pod)
            with anyio.fail_after(20):
                while not (slow.calls("ADD") and cached(dirs)):
                    await anyio.sleep(0.02)
            await other.gc([])  # fast is cached, slow is still adding: both in use
            assert fast.calls("DEL") == [] and slow.calls("DEL") == []
            assert [
                a["containerID"] for a in fast.stdins("GC")[-1]["cni.dev/valid-attachments"]
            ] == [pod.id]
        assert cached(dirs) == [
            f"fast-{pod.id}-eth0",
            f"slow-{pod.id}-eth1",
        ]
        await one.tear_down_pod(pod)


@dataclass
class Victim:
    """A runtime SIGKILLed in the middle of a set-up (fast attached, slow's ADD orphaned)."""

    fast: FakePlugin
    slow: FakePlugin
    netns: str
    cid: str
    orphan: dict[str, Any]  # the slow ADD still running


@asynccontextmanager
async def killed_mid_set_up(
    dirs: dict[str, Path], net: Sandbox, slow_add: float
) -> AsyncIterator[Victim]:
    """Kill a runtime once fast is attached and slow's ADD (``slow_add`` seconds) has begun;
    end whatever plugins it left afterwards."""
    fast, slow = FakePlugin(dirs["bin"], "fast-p"), FakePlugin(dirs["bin"], "slow-p")
    slow.on("ADD", sleep=slow_add)
    write_conflist(dirs["conf"], "fast", [{"type": "fast-p"}])
    write_conflist(dirs["conf"], "slow", [{"type": "slow-p"}])
    netns = net.netns("victim")
    cid = f"{net.prefix}-victim"
    runtime = subprocess.Popen(
        [sys.executable, "-c", DIE_DURING_SETUP, str(dirs["conf"]), str(dirs["bin"]),
         str(dirs["cache"]), netns, cid]
    )  # fmt: skip
    try:
        with anyio.fail_after(30):
            while not (slow.calls("ADD") and cached(dirs)):
                await anyio.sleep(0.02)
        runtime.send_signal(signal.SIGKILL)
        runtime.wait()
        [orphan] = slow.calls("ADD")
        yield Victim(fast, slow, netns, cid, orphan)
    finally:
        for call in slow.calls("ADD"):
            kill_group(call["pid"])


@pytest.mark.parametrize("cleanup", ["tear_down_pod", "gc"])
async def test_recovery_waits_for_the_plugins_that_outlived_their_runtime(
    dirs: dict[str, Path], net: Sandbox, cleanup: str
) -> None:
    """Plugins run in sessions of their own and outlive a SIGKILLed runtime. A DEL sent while
    the orphaned ADD still runs would be undone when it finishes: recovery waits for it."""
    async with killed_mid_set_up(dirs, net, slow_add=2) as victim:
        assert alive(victim.orphan["pid"])
        async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
            if cleanup == "tear_down_pod":
                await cni.tear_down_pod(PodNetwork("victim", "ns", victim.cid, "uid", victim.netns))
            else:
                await cni.gc([])  # the orphan still runs: nothing of the pod is collected
                assert victim.fast.calls("DEL") == [] and victim.slow.calls("DEL") == []
                with anyio.fail_after(30):
                    while alive(victim.orphan["pid"]):
                        await anyio.sleep(0.05)
                await cni.gc([])
        [delete] = victim.slow.calls("DEL")
        assert delete["time"] >= victim.orphan["time"] + 2  # after the orphaned ADD finished
        assert len(victim.fast.calls("DEL")) == 1
        assert os.listdir(dirs["cache"] / "cni_async-intents") == []
        assert os.listdir(dirs["cache"] / "results") == []


async def test_a_new_set_up_waits_for_the_plugins_of_a_killed_one(
    dirs: dict[str, Path], net: Sandbox
) -> None:
    """The kubelet retries a set-up after its runtime restarts: the retry's ADDs must not run
    beside the orphaned ADD of the same container."""
    async with killed_mid_set_up(dirs, net, slow_add=2) as victim:
        victim.slow.on("ADD")  # the retry's ADD is quick
        pod = PodNetwork(
            "victim", "ns", victim.cid, "uid", victim.netns,
            [NetAttachment("fast"), NetAttachment("slow")],
        )  # fmt: skip
        async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
            await cni.set_up_pod(pod)
            [_, retry] = victim.slow.calls("ADD")
            assert retry["time"] >= victim.orphan["time"] + 2  # after the orphaned ADD finished
            await cni.tear_down_pod(pod)


def cached(dirs: dict[str, Path]) -> list[str]:
    results = dirs["cache"] / "results"
    return sorted(os.listdir(results)) if results.exists() else []
