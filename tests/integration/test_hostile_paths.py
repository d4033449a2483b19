"""Paths that are not what they claim: nothing the library opens can block it.

A FIFO opened for reading blocks until a writer appears, and a device may never end; each of
these tests would hang (and time out) if the path were opened as a plain file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import anyio
import pytest

from cni_async import CacheEntry, CacheError, NamespaceError, load_config_dir
from cni_async._testing import ResultCache, loopback_is_up, socket_in

pytestmark = pytest.mark.anyio

# Far longer than any of these calls takes, far shorter than a hang.
DEADLINE = 10


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


async def test_a_fifo_named_like_a_cache_entry_is_skipped(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    await cache.write(CacheEntry(container_id="c1", network_name="net", if_name="eth0"))
    fifo(tmp_path / "results" / "net-c2-eth0")
    with anyio.fail_after(DEADLINE):
        assert [e.container_id for e in await cache.attachments()] == ["c1"]
        assert await cache.attachments("c2") == []
        assert await cache.read("net", "c2", "eth0") is None


async def test_a_link_to_a_device_named_like_a_cache_entry_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net-c1-eth0").symlink_to("/dev/zero")
    cache = ResultCache(str(tmp_path))
    with anyio.fail_after(DEADLINE):
        assert await cache.attachments() == []


async def test_a_fifo_named_like_a_set_up_record_is_skipped(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    fifo(Path(cache.intents_dir) / "c1")
    with anyio.fail_after(DEADLINE):
        assert await cache.read_intent("c1") == []
        assert await cache.intents() == {}


async def test_a_fifo_as_a_configuration_file_is_reported_not_read(tmp_path: Path) -> None:
    fifo(tmp_path / "10-pipe.conflist")
    (tmp_path / "20-ok.conf").write_text('{"cniVersion":"1.0.0","name":"ok","type":"x"}')
    with anyio.fail_after(DEADLINE):
        loaded = await load_config_dir(str(tmp_path))
    assert [n.name for n in loaded.networks] == ["ok"]
    [(path, error)] = loaded.invalid
    assert path.endswith("10-pipe.conflist")
    assert "not a regular file" in str(error)


async def test_a_fifo_as_the_pods_namespace_fails_at_once(tmp_path: Path) -> None:
    path = str(fifo(tmp_path / "netns"))
    # In a worker thread that a timeout may abandon: a blocking open would hang the test
    # (and the event loop) forever instead of failing it.
    with anyio.fail_after(DEADLINE), pytest.raises(OSError):
        await anyio.to_thread.run_sync(socket_in, path, abandon_on_cancel=True)
    with anyio.fail_after(DEADLINE), pytest.raises(NamespaceError):
        await loopback_is_up(path)


async def test_a_nul_byte_in_the_namespace_path_is_a_namespace_error() -> None:
    with pytest.raises(NamespaceError):
        await loopback_is_up("/run/netns/pod\0x")


@pytest.mark.parametrize("sub", ["cni_async-tmp", "cni_async-intents"])
async def test_a_symlinked_cache_sub_directory_of_ours_is_never_used(
    tmp_path: Path, sub: str
) -> None:
    """Writes fail, and reads, listings and deletions never follow the link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = elsewhere / "old.1-1"  # what a stale temporary would be named
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    (intents := elsewhere / "c1").write_bytes(b"")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / sub).symlink_to(elsewhere)
    cache = ResultCache(str(cache_dir))
    await cache.remove_stale_temporaries()
    await cache.remove_intent("c1")
    assert await cache.intents() == {}
    assert not cache.intent_in_use("c1")
    entry = CacheEntry(container_id="c2", network_name="net", if_name="eth0")
    if sub == "cni_async-tmp":  # it serves both kinds of write
        with pytest.raises(CacheError, match="not a real directory"):
            await cache.write(entry)
    with pytest.raises(CacheError, match="not a real directory"):
        await cache.write_intent("c2", [entry])
    assert sorted(p.name for p in elsewhere.iterdir()) == sorted([old.name, intents.name])


async def test_results_may_be_a_link_to_a_trusted_directory_only(tmp_path: Path) -> None:
    """libcni's results/ may have been moved and linked by an administrator: followed when
    the target is a directory of ours (or root's) that nobody else can write to."""
    moved = tmp_path / "moved"
    moved.mkdir(mode=0o700)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "results").symlink_to(moved)
    cache = ResultCache(str(cache_dir))
    entry = CacheEntry(container_id="c1", network_name="net", if_name="eth0")
    await cache.write(entry)
    assert os.listdir(moved) == ["net-c1-eth0"]
    assert [e.container_id for e in await cache.attachments()] == ["c1"]
    moved.chmod(0o777)  # anyone may now plant entries there: not a cache to act on
    with pytest.raises(CacheError, match="writable by group or others"):
        await cache.attachments()
    with pytest.raises(CacheError, match="writable by group or others"):
        await cache.write(entry)
    assert await cache.read("net", "c1", "eth0") is None
    await cache.remove("net", "c1", "eth0")
    assert os.listdir(moved) == ["net-c1-eth0"]
    moved.chmod(0o700)
    if os.geteuid() == 0:  # only root can give it away
        os.chown(moved, 12345, 12345)
        with pytest.raises(CacheError, match="owned by uid 12345"):
            await cache.attachments()


async def test_running_out_of_descriptors_is_not_blamed_on_the_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_descriptors(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "open", no_descriptors)
    with pytest.raises(NamespaceError, match="out of file descriptors") as info:
        await loopback_is_up("/run/netns/anything")
    monkeypatch.undo()
    assert info.value.code == 11  # try again later: the namespace itself may be fine


async def test_a_status_check_cancelled_before_it_starts_opens_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check of ``lo`` takes its cancellation before it makes a socket in the namespace
    (one made first would stay open until the garbage collector found it)."""
    opened: list[object] = []
    real_open = os.open

    def counting_open(path: object, *args: object, **kwargs: object) -> int:
        opened.append(path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting_open)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await loopback_is_up("/proc/self/ns/net")
    monkeypatch.undo()
    assert scope.cancelled_caught
    assert opened == []


async def test_an_entry_whose_name_fits_is_written_whatever_its_temporary(
    tmp_path: Path,
) -> None:
    cache = ResultCache(str(tmp_path))
    container_id = "c" * (255 - len("net--eth0"))  # the entry's name is exactly 255 bytes
    entry = CacheEntry(container_id=container_id, network_name="net", if_name="eth0")
    await cache.write(entry)
    await cache.write_intent(container_id, [entry])
    [found] = await cache.attachments(container_id)
    assert found.container_id == container_id
    assert len(os.path.basename(cache.path("net", container_id, "eth0"))) == 255
    assert os.listdir(cache.tmp_dir) == []
