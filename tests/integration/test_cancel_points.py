"""Hundreds of set-ups and teardowns cancelled at random moments, on small, fast plugins: after a
final teardown every ADD that ever started has had its DEL, and no cache entry or intent is
left."""

from __future__ import annotations

import os
import random
from pathlib import Path

import anyio
import pytest

from cni_async import CNIPlugin, NetAttachment, PodNetwork

from ..support.netns import Sandbox
from ..support.plugins import write_conflist
from ..support.procs import children

pytestmark = [pytest.mark.anyio, pytest.mark.privileged]

RUNS = 150

# A plugin in sh: logs "<command> <container>" and takes a few milliseconds.
SCRIPT = """#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> {log}
sleep 0.00{delay}
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.77.0.2/24"}}]}}'
elif [ "$CNI_COMMAND" = VERSION ]; then
  echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}'
fi
"""


async def test_random_cancellation_points(tmp_path: Path, net: Sandbox) -> None:
    conf, bin_dir, log = tmp_path / "conf", tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name, delay in (("quick", 1), ("slow", 8)):
        plugin = bin_dir / name
        plugin.write_text(SCRIPT.format(log=log, delay=delay))
        plugin.chmod(0o755)
    write_conflist(conf, "neta", [{"type": "quick"}, {"type": "slow"}], version="1.0.0")
    write_conflist(conf, "netb", [{"type": "slow"}], version="1.0.0")
    rng = random.Random(1128)
    async with CNIPlugin(str(conf), [str(bin_dir)], str(tmp_path / "cache"), watch=False) as cni:
        netns = net.netns("shared")
        for i in range(RUNS):
            pod = PodNetwork(
                f"p{i}", "ns", f"c{i}", "u", netns, [NetAttachment("neta"), NetAttachment("netb")]
            )
            with anyio.move_on_after(rng.uniform(0, 0.06)):
                await cni.set_up_pod(pod)
            with anyio.move_on_after(rng.uniform(0, 0.03)):
                await cni.tear_down_pod(pod)
            await cni.tear_down_pod(pod)
    added: dict[str, int] = {}
    deleted: dict[str, int] = {}
    for line in log.read_text().splitlines():
        command, _, container = line.partition(" ")
        if command == "ADD":
            added[container] = 1
        elif command == "DEL":
            deleted[container] = 1
    assert added, "no ADD ever started: the cancel moments are all too early"
    assert set(added) <= set(deleted)
    cache = tmp_path / "cache"
    assert os.listdir(cache / "results") == []
    intents = cache / "cni_async-intents"
    assert not intents.exists() or os.listdir(intents) == []
    assert children() == []
