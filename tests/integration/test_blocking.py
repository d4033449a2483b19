"""The blocking facade, driven from plain threads."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import anyio
import pytest

from cni_async import BlockingCNIPlugin, PodNetwork

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_from_plain_threads(dirs: dict[str, Path], net: Sandbox, backend: str) -> None:
    fake = FakePlugin(dirs["bin"], "fa").on("ADD", sleep=0.3)
    write_conflist(dirs["conf"], "net1", [{"type": "fa"}])
    pods = [
        PodNetwork(f"p{i}", "ns", f"{net.prefix}-{i}", "u", net.netns(f"p{i}")) for i in range(4)
    ]
    errors: list[BaseException] = []
    with BlockingCNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), backend=backend
    ) as cni:
        assert cni.name == "cni" and cni.default_network_name == "net1"
        cni.status()

        def worker(pod: PodNetwork) -> None:
            try:
                [result] = cni.set_up_pod(pod, timeout=20)
                assert result.result.ips[0].address == "10.99.0.2/24"
                cni.tear_down_pod(pod)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(p,)) for p in pods]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        starts = sorted(c["time"] for c in fake.calls("ADD"))
        assert starts[-1] - starts[0] < 0.6  # in parallel (one after the other: 0.9 s or more)
        fake.on("ADD", sleep=30)
        with pytest.raises(TimeoutError):
            cni.set_up_pod(pods[0], timeout=0.5)
        assert len(fake.calls("DEL")) == 5  # four teardowns and the timed-out set-up's rollback
    assert os.listdir(dirs["cache"] / "results") == []
    with pytest.raises(anyio.ClosedResourceError):
        cni.status()


def test_interrupt_cancels_and_rolls_back(dirs: dict[str, Path], net: Sandbox) -> None:
    """^C while a set-up blocks: the set-up is cancelled and rolled back, then the
    KeyboardInterrupt comes through, without waiting for the plugin to finish."""
    fake = FakePlugin(dirs["bin"], "fa").on("ADD", sleep=30)
    write_conflist(dirs["conf"], "net1", [{"type": "fa"}])
    pod = PodNetwork("p", "ns", f"{net.prefix}-p", "u", net.netns("p"))
    with BlockingCNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))  # a real ^C
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                cni.set_up_pod(pod)
        finally:
            timer.cancel()  # never a ^C for a later test
        assert time.monotonic() - started < 10
        assert len(fake.calls("DEL")) == 1
        cni.status()  # still usable
    results = dirs["cache"] / "results"
    assert not results.exists() or os.listdir(results) == []


def test_entering_twice_is_refused_and_harmless(dirs: dict[str, Path]) -> None:
    FakePlugin(dirs["bin"], "fa")
    write_conflist(dirs["conf"], "net1", [{"type": "fa"}])
    with BlockingCNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        with pytest.raises(RuntimeError, match="open already"):
            cni.__enter__()
        cni.status()
