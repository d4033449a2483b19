"""Config watching: inotify events, coalescing, last-good files, re-arming, polling."""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from cni_async import (
    CNIEngine,
    CNIPlugin,
    ConfigError,
    ConfigEvent,
    ConfigSnapshot,
    ConfigWatcher,
    DefaultNetworkChanged,
    EventSubscription,
    FileInvalid,
    NetworkAdded,
    NetworkChanged,
    NetworkRemoved,
    NotReady,
    PluginAppeared,
    Ready,
    Reloaded,
    WatcherDegraded,
    watch_config,
)
from cni_async._testing import EventHub, VersionCache, build_snapshot, watch_module

from ..support.plugins import FakePlugin, write_conflist
from ..support.procs import open_fds

pytestmark = pytest.mark.anyio

E = TypeVar("E")


@pytest.fixture
def fake(dirs: dict[str, Path]) -> FakePlugin:
    return FakePlugin(dirs["bin"], "fa")


async def expect(
    events: ConfigWatcher | EventSubscription,
    kind: type[E],
    where: Callable[[E], bool] = lambda e: True,
    timeout: float = 5.0,
) -> E:
    """The next event of ``kind`` matching ``where``, skipping others."""
    with anyio.fail_after(timeout):
        async for event in events:
            if isinstance(event, kind) and where(event):
                return event
    raise AssertionError(f"iteration ended before a {kind.__name__}")


async def settle(events: ConfigWatcher | EventSubscription, quiet: float = 0.3) -> list[Any]:
    """Every event until none arrives for ``quiet`` seconds."""
    seen: list[ConfigEvent] = []
    while True:
        with anyio.move_on_after(quiet) as scope:
            seen.append(await events.__anext__())
        if scope.cancelled_caught:
            return seen


def plugins(name: str = "fa") -> list[dict[str, Any]]:
    return [{"type": name}]


async def test_initial_state_then_a_new_default(dirs: dict[str, Path], fake: FakePlugin) -> None:
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        assert isinstance(await expect(events, NotReady), NotReady)
        write_conflist(dirs["conf"], "net1", plugins(), filename="10-net1.conflist")
        added = await expect(events, NetworkAdded)
        assert added.name == "net1" and added.path == str(dirs["conf"] / "10-net1.conflist")
        assert (await expect(events, DefaultNetworkChanged)).current == "net1"
        assert (await expect(events, Ready)).default_network == "net1"
        assert events.snapshot is not None and events.snapshot.default is not None


async def test_atomic_rename_copy_in_place_and_chunks(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    path = dirs["conf"] / "10-net1.conflist"
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        await settle(events)
        # An atomic rename (write elsewhere in the dir, then rename).
        write_conflist(dirs["conf"], "net1", plugins())
        await expect(events, NetworkAdded, lambda e: e.name == "net1")
        (dirs["conf"] / "net1.conflist").rename(path)
        await settle(events)
        # A copy in place: the file is truncated and rewritten.
        body = {"cniVersion": "1.1.0", "name": "net1", "plugins": plugins(), "x": 1}
        shutil.copyfile(_write_tmp(dirs, body), path)
        await expect(events, NetworkChanged, lambda e: e.name == "net1")
        # A write in several chunks (each its own open and close, as `echo >>` would do):
        # while half written, the last good version stays in use.
        text = json.dumps({**body, "x": 2})
        path.write_text(text[:20])
        invalid = await expect(events, FileInvalid)
        assert invalid.kept_last_good and invalid.path == str(path)
        assert events.snapshot is not None
        assert events.snapshot.get("net1") is not None
        assert events.snapshot.default is not None
        with open(path, "a") as f:
            f.write(text[20:])
        changed = await expect(events, NetworkChanged)
        assert changed.name == "net1"
        assert events.snapshot.get("net1").bytes == text.encode()  # type: ignore[union-attr]


def _write_tmp(dirs: dict[str, Path], body: dict[str, Any]) -> Path:
    tmp = dirs["cache"] / "src.json"
    tmp.write_text(json.dumps(body))
    return tmp


async def test_deletes(dirs: dict[str, Path], fake: FakePlugin) -> None:
    write_conflist(dirs["conf"], "net1", plugins(), filename="10-net1.conflist")
    write_conflist(dirs["conf"], "net2", plugins(), filename="20-net2.conflist")
    write_conflist(dirs["conf"], "net3", plugins(), filename="30-net3.conflist")
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        await settle(events)
        (dirs["conf"] / "30-net3.conflist").unlink()
        assert (await expect(events, NetworkRemoved)).name == "net3"
        assert events.snapshot is not None and events.snapshot.get("net3") is None
        (dirs["conf"] / "10-net1.conflist").unlink()
        assert (await expect(events, NetworkRemoved)).name == "net1"
        change = await expect(events, DefaultNetworkChanged)
        assert (change.previous, change.current) == ("net1", "net2")


async def test_plugin_installed_after_its_config(dirs: dict[str, Path], fake: FakePlugin) -> None:
    write_conflist(dirs["conf"], "late", plugins("late-plugin"))
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        invalid = await expect(events, FileInvalid)
        assert "late-plugin" in invalid.reason
        await settle(events)
        FakePlugin(dirs["bin"], "late-plugin")
        assert (await expect(events, NetworkAdded)).name == "late"
        assert (await expect(events, PluginAppeared)).plugin == "late-plugin"
        assert (await expect(events, Ready)).default_network == "late"


async def test_conf_dir_deleted_and_recreated(dirs: dict[str, Path], fake: FakePlugin) -> None:
    conf = dirs["conf"] / "net.d"
    write_conflist(conf, "net1", plugins())
    async with watch_config(str(conf), [str(dirs["bin"])]) as events:
        await settle(events)
        shutil.rmtree(conf)
        assert (await expect(events, NetworkRemoved)).name == "net1"
        await expect(events, NotReady)
        write_conflist(conf, "net1", plugins())  # the directory comes back
        assert (await expect(events, NetworkAdded)).name == "net1"
        await expect(events, Ready)
        # And its watch was re-armed: later changes are seen too.
        write_conflist(conf, "net2", plugins(), filename="00-net2.conflist")
        assert (await expect(events, DefaultNetworkChanged)).current == "net2"


async def test_a_flood_is_coalesced(dirs: dict[str, Path], fake: FakePlugin) -> None:
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])], debounce=0.2) as events:
        await settle(events)
        before = events.reloads
        for i in range(60):
            write_conflist(dirs["conf"], f"n{i:02d}", plugins())
        seen = await settle(events, quiet=1.0)
        assert sum(isinstance(e, NetworkAdded) for e in seen) == 60
        assert 1 <= events.reloads - before <= 3
        assert len(fake.calls("VERSION")) == 1  # cached per binary


async def test_malformed_file_reports_why(dirs: dict[str, Path], fake: FakePlugin) -> None:
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        await settle(events)
        (dirs["conf"] / "10-bad.conflist").write_text('{"name": "bad", "plugins": 3}')
        invalid = await expect(events, FileInvalid)
        assert invalid.path.endswith("10-bad.conflist") and "plugins" in invalid.reason
        assert not invalid.kept_last_good


async def test_plugin_subdirectory_is_watched(dirs: dict[str, Path], fake: FakePlugin) -> None:
    (dirs["conf"] / "net1.conflist").write_text('{"cniVersion": "1.1.0", "name": "net1"}')
    sub = dirs["conf"] / "net1"
    sub.mkdir()
    (sub / "10-a.conf").write_text('{"type": "fa"}')
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])]) as events:
        await settle(events)
        (sub / "20-b.conf").write_text('{"type": "fa", "extra": true}')
        await expect(events, NetworkChanged)
        assert events.snapshot is not None
        assert len(events.snapshot.get("net1").plugins) == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
async def test_a_change_made_during_a_reload_is_not_lost(
    dirs: dict[str, Path], fake: FakePlugin, use_inotify: bool
) -> None:
    """A plugin sub-directory appears; while that reload is being built, a file is written in
    it. The directory was not watched when the build read it: the file must still be seen."""
    (dirs["conf"] / "net1.conflist").write_text('{"cniVersion": "1.1.0", "name": "net1"}')
    sub = dirs["conf"] / "net1"
    engine = CNIEngine([str(dirs["bin"])])
    versions = VersionCache(engine)
    generation = 0
    during_build: Callable[[], None] | None = None

    async def build(previous: ConfigSnapshot | None) -> ConfigSnapshot:
        nonlocal generation, during_build
        generation += 1
        snapshot = await build_snapshot(
            str(dirs["conf"]), engine, versions, default_name=None, generation=generation
        )
        if during_build is not None:  # the build has read the directory: change it now
            during_build()
            during_build = None
        return snapshot

    async with ConfigWatcher(
        str(dirs["conf"]), [str(dirs["bin"])], build, poll_interval=0.1, use_inotify=use_inotify
    ) as events:
        await settle(events)

        def write_second() -> None:
            (sub / "20-b.conf").write_text('{"type": "fa", "extra": true}')

        during_build = write_second
        sub.mkdir()
        (sub / "10-a.conf").write_text('{"type": "fa"}')
        with anyio.fail_after(10):
            while True:
                await events.__anext__()
                net = events.snapshot.get("net1") if events.snapshot else None
                if net is not None and len(net.plugins) == 2:
                    break


async def test_a_failed_watch_falls_back_to_polling(
    dirs: dict[str, Path], fake: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of inotify watches (ENOSPC): say so and poll, rather than watch nothing."""

    def no_watches(self: object, path: object, mask: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("asyncinotify.Inotify.add_watch", no_watches)
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])], poll_interval=0.1) as events:
        degraded = await expect(events, WatcherDegraded)
        assert "No space left" in degraded.reason and events.polling
        write_conflist(dirs["conf"], "net1", plugins())
        assert (await expect(events, NetworkAdded)).name == "net1"


async def test_watching_plugin_tells_early_subscribers_the_first_configuration(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    write_conflist(dirs["conf"], "net1", plugins())
    cni = CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]))
    async with cni.config_events() as events, cni:
        assert (await expect(events, NetworkAdded)).name == "net1"
        await expect(events, Ready)


async def test_unreadable_conf_dir_is_a_config_error_when_watching(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ConfigError, match="Not a directory"):
        async with CNIPlugin(str(not_a_dir), [str(tmp_path)], str(tmp_path / "cache")):
            pass


async def test_polling_by_choice(dirs: dict[str, Path], fake: FakePlugin) -> None:
    async with watch_config(
        str(dirs["conf"]), [str(dirs["bin"])], use_inotify=False, poll_interval=0.1
    ) as events:
        assert events.polling
        await settle(events)
        write_conflist(dirs["conf"], "net1", plugins())
        assert (await expect(events, NetworkAdded)).name == "net1"


async def test_polling_fallback(
    dirs: dict[str, Path], fake: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_inotify(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(watch_module, "Inotify", no_inotify)
    async with watch_config(str(dirs["conf"]), [str(dirs["bin"])], poll_interval=0.1) as events:
        degraded = await expect(events, WatcherDegraded)
        assert degraded.poll_interval == 0.1 and "Too many open files" in degraded.reason
        assert events.polling
        write_conflist(dirs["conf"], "net1", plugins())
        assert (await expect(events, NetworkAdded)).name == "net1"


async def test_closing_releases_inotify(dirs: dict[str, Path], fake: FakePlugin) -> None:
    before = open_fds()
    watcher = watch_config(str(dirs["conf"]), [str(dirs["bin"])])
    async with watcher:
        assert len(open_fds()) > len(before)
    assert open_fds() == before
    async for _event in watcher:
        raise AssertionError("a closed watcher yields nothing")


async def test_plugin_follows_changes_and_publishes(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    async with CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"])) as cni:
        assert cni.default_network_name is None
        async with cni.config_events() as events:
            await expect(events, NotReady)  # the current state comes first
            write_conflist(dirs["conf"], "net1", plugins())
            await expect(events, Ready)
            assert cni.default_network_name == "net1"
            await cni.status()
    assert cni.watcher is not None and cni.watcher.polling  # closed with the plugin


async def test_events_without_watching(dirs: dict[str, Path], fake: FakePlugin) -> None:
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        assert cni.watcher is None
        async with cni.config_events() as events:
            await expect(events, Reloaded)
            write_conflist(dirs["conf"], "net1", plugins())
            await cni.reload()
            assert (await expect(events, NetworkAdded)).name == "net1"


async def test_a_fifo_in_the_conf_dir_cannot_hang_a_reload(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    write_conflist(dirs["conf"], "net1", plugins(), filename="10-net1.conflist")
    os.mkfifo(dirs["conf"] / "20-pipe.conf")
    with anyio.fail_after(5):
        async with CNIPlugin(
            str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
        ) as cni:
            assert [n.name for n in cni.config.networks] == ["net1"]
            [(path, error)] = cni.config.invalid
    assert path.endswith("20-pipe.conf") and "not a regular file" in str(error)


async def test_subscribing_after_close_ends_at_once(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        pass
    with anyio.fail_after(2):
        async with cni.config_events() as events:
            seen = [event async for event in events]
    assert any(isinstance(e, NotReady) for e in seen)  # the state it had, then the end


async def test_a_plugin_made_unexecutable_is_asked_again(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    write_conflist(dirs["conf"], "net1", plugins())
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        assert cni.default_network_name == "net1"
        fake.path.chmod(0o644)  # same inode, size and mtime: only ctime and mode change
        await cni.reload()
        assert cni.default_network_name is None


async def test_unrelated_files_beside_a_missing_conf_dir_do_not_reload(
    tmp_path: Path, dirs: dict[str, Path], fake: FakePlugin
) -> None:
    conf = tmp_path / "etc" / "net.d"  # missing: its parent is watched instead
    conf.parent.mkdir()
    async with watch_config(str(conf), [str(dirs["bin"])]) as events:
        await settle(events)
        before = events.reloads
        for i in range(3):
            (tmp_path / "etc" / f"resolv{i}.conf").write_text("nameserver 10.0.0.1\n")
            await anyio.sleep(0.1)
        await settle(events, quiet=0.3)
        assert events.reloads == before
        conf.mkdir()
        write_conflist(conf, "net1", plugins())
        assert (await expect(events, NetworkAdded)).name == "net1"


async def test_a_dropped_subscription_is_forgotten_and_a_slow_one_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = EventHub(capacity=2)
    abandoned = hub.subscribe()
    del abandoned  # never closed: a break out of async for, without async with
    gc.collect()
    slow = hub.subscribe()
    with caplog.at_level(logging.WARNING, logger="cni_async"):
        hub.publish([Reloaded(generation=i) for i in range(10)])
    assert len(hub._subscriptions) == 1
    assert len([r for r in caplog.records if "behind" in r.getMessage()]) == 1
    assert [e async for e in _take(slow, 2)] == [Reloaded(0), Reloaded(1)]
    await slow.aclose()


async def _take(events: EventSubscription, n: int) -> AsyncIterator[ConfigEvent]:
    for _ in range(n):
        yield await events.__anext__()


async def test_a_configmap_style_update_is_seen(dirs: dict[str, Path], fake: FakePlugin) -> None:
    """Kubernetes mounts a ConfigMap as links through ``..data``, which an update swaps for a
    new timestamped directory (made first, linked later): the swap itself must reload."""
    conf = dirs["conf"]

    def version(tag: str, plugin_count: int) -> None:
        (conf / tag).mkdir()
        write_conflist(conf / tag, "net1", plugins() * plugin_count, filename="10-net1.conflist")

    version("..2026_a", 1)
    (conf / "..data").symlink_to("..2026_a")
    (conf / "10-net1.conflist").symlink_to("..data/10-net1.conflist")
    async with watch_config(str(conf), [str(dirs["bin"])], debounce=0.02) as events:
        await settle(events)
        version("..2026_b", 2)
        await settle(events, quiet=0.2)  # that directory alone changes nothing
        (conf / "..data_tmp").symlink_to("..2026_b")
        os.rename(conf / "..data_tmp", conf / "..data")
        await expect(events, NetworkChanged)
        assert events.snapshot is not None
        assert len(events.snapshot.get("net1").plugins) == 2  # type: ignore[union-attr]


async def test_a_reload_while_watching_publishes_each_change_once(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    async with (
        CNIPlugin(str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), debounce=0.2) as cni,
        cni.config_events() as events,
    ):
        await settle(events)
        write_conflist(dirs["conf"], "net1", plugins())
        await cni.reload()  # before the watcher's debounce ends: both see the new file
        seen = await settle(events, quiet=1.0)
    added = [e for e in seen if isinstance(e, NetworkAdded)]
    assert [e.name for e in added] == ["net1"]
