"""Fault injection: a misbehaving plugin on every verb ends in a typed error within its deadline,
with no process, file descriptor or half-written cache entry left behind."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from cni_async import (
    CNIEngine,
    CNIError,
    MultipleErrors,
    PluginError,
    PluginExecFailed,
    PluginNotFound,
    PluginTimeout,
    ProtocolError,
    RuntimeConf,
    TryAgainLater,
    parse_conflist,
)
from cni_async._testing import spawner_module

from ..support.plugins import FakePlugin
from ..support.procs import children, open_fds

pytestmark = pytest.mark.anyio

VERBS = ("ADD", "CHECK", "DEL", "STATUS", "GC", "VERSION")
WITH_RESULT = {"ADD", "VERSION"}  # the verbs whose stdout is parsed on success
DEADLINE = 1.0

# fault -> (plugin behaviour, expected error type, or None for success)
FAULTS: dict[str, tuple[dict[str, Any], type[CNIError] | None]] = {
    "hang": ({"sleep": 600}, PluginTimeout),
    "slow beyond the deadline": ({"sleep": DEADLINE * 3}, PluginTimeout),
    "crash by signal": ({"signal": 9, "stdout": ""}, PluginError),
    "exit 1 without output": ({"stdout": "", "exit": 1}, PluginError),
    "garbage then exit 1": ({"stdout": "%%garbage%%", "exit": 1}, PluginError),
    "garbage with exit 0": ({"stdout": "%%garbage%%"}, ProtocolError),
    "megabytes": ({"flood": 6_000_000}, ProtocolError),
    "a valid error": ({"stdout": {"code": 11, "msg": "busy"}, "exit": 1}, TryAgainLater),
    "grandchild keeps stdout": ({"grandchild": 60}, None),
}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[CNIEngine, FakePlugin, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = FakePlugin(bin_dir, "faulty")
    engine = CNIEngine(
        [str(bin_dir)],
        cache_dir=str(tmp_path / "cache"),
        timeouts=dict.fromkeys(VERBS, DEADLINE),
    )
    engine.executor.pipe_grace = 0.3  # type: ignore[attr-defined]
    return engine, fake, tmp_path / "cache"


NET = parse_conflist(
    json.dumps({"cniVersion": "1.1.0", "name": "net1", "plugins": [{"type": "faulty"}]}).encode()
)
RT = RuntimeConf(container_id="ctr1", netns="/run/netns/none", ifname="eth0")


async def call(engine: CNIEngine, verb: str) -> None:
    if verb == "ADD":
        await engine.add_network_list(NET, RT)
    elif verb == "CHECK":
        await engine.check_network_list(NET, RT)
    elif verb == "DEL":
        await engine.del_network_list(NET, RT)
    elif verb == "STATUS":
        await engine.status_network_list(NET)
    elif verb == "GC":
        try:
            await engine.gc_plugins(NET, [])
        except MultipleErrors as exc:
            [inner] = exc.errors
            raise inner from exc
    else:
        await engine.get_version_info("faulty")


def assert_clean(before: set[int], cache: Path) -> None:
    assert children() == []
    assert open_fds() == before
    tmp = cache / "cni_async-tmp"
    assert not tmp.exists() or os.listdir(tmp) == []


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault(setup: tuple[CNIEngine, FakePlugin, Path], verb: str, fault: str) -> None:
    engine, fake, cache = setup
    behaviour, expected = FAULTS[fault]
    if fault == "garbage with exit 0" and verb not in WITH_RESULT:
        expected = None  # stdout is not read on success
    fake.on(verb, **behaviour)
    before = open_fds()
    started = time.monotonic()
    if expected is None:
        await call(engine, verb)
    else:
        with pytest.raises(expected) as info:
            await call(engine, verb)
        assert info.value.verb == verb
        assert info.value.plugin == "faulty"
    assert time.monotonic() - started < DEADLINE + 3
    assert_clean(before, cache)
    if verb == "ADD":
        results = cache / "results"
        written = os.listdir(results) if results.exists() else []
        assert written == ([] if expected else ["net1-ctr1-eth0"])


@pytest.mark.parametrize("verb", VERBS)
async def test_missing_binary(setup: tuple[CNIEngine, FakePlugin, Path], verb: str) -> None:
    engine, fake, _cache = setup
    fake.path.unlink()
    with pytest.raises(PluginNotFound):
        await call(engine, verb)


@pytest.mark.parametrize("verb", VERBS)
async def test_not_executable(setup: tuple[CNIEngine, FakePlugin, Path], verb: str) -> None:
    engine, fake, cache = setup
    fake.path.chmod(0o644)
    before = open_fds()
    with pytest.raises(PluginExecFailed):
        await call(engine, verb)
    assert_clean(before, cache)


async def test_a_failed_spawn_leaves_no_descriptor_however_slow_the_spawner(
    setup: tuple[CNIEngine, FakePlugin, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spawner thread closes the child's pipe ends before it wakes the loop thread: a run
    # that ends as soon as it learns its plugin could not start leaves nothing open.
    engine, fake, cache = setup
    fake.path.chmod(0o644)
    close = spawner_module.Spawn._close_child_fds

    def slow_close(spawn: Any) -> None:
        time.sleep(0.05)
        close(spawn)

    monkeypatch.setattr(spawner_module.Spawn, "_close_child_fds", slow_close)
    before = open_fds()
    with pytest.raises(PluginExecFailed):
        await call(engine, "ADD")
    assert_clean(before, cache)


@pytest.mark.parametrize("verb", ["ADD", "DEL", "VERSION"])
async def test_text_file_busy(setup: tuple[CNIEngine, FakePlugin, Path], verb: str) -> None:
    engine, fake, _cache = setup
    engine.timeouts[verb] = 10
    fd = os.open(fake.path, os.O_WRONLY)
    threading.Timer(1.2, os.close, [fd]).start()
    await call(engine, verb)
    assert len(fake.calls(verb)) == 1


async def test_cancelled_everywhere_leaves_nothing(
    setup: tuple[CNIEngine, FakePlugin, Path],
) -> None:
    engine, fake, cache = setup
    fake.on("ADD", sleep=0.05)
    before = open_fds()
    for delay in [i * 0.004 for i in range(40)]:
        with anyio.move_on_after(delay):
            await engine.add_network_list(NET, RT)
        await engine.del_network_list(NET, RT)
        assert children() == []
    assert open_fds() == before
    assert os.listdir(cache / "results") == []
