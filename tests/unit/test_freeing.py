"""Removed cache entries: the name goes at once, the file is freed on the freeing thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cni_async import CacheEntry
from cni_async._testing import ResultCache, freeing_module, unlink_keeping

from ..support.procs import deleted_files_held, run_forked, wait_until

pytestmark = pytest.mark.anyio


def wait_until_freed(under: Path) -> list[str]:
    """What is still held under ``under`` once nothing is, or a few seconds have passed."""
    wait_until(lambda: not deleted_files_held(under))
    return deleted_files_held(under)


def test_unlink_keeping_removes_the_name_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "entry"
    path.write_bytes(b"x" * 600)
    fd = unlink_keeping(str(path))
    assert fd is not None
    try:
        assert not path.exists()
        assert os.fstat(fd).st_nlink == 0
        assert deleted_files_held(tmp_path) == [str(path)]
    finally:
        os.close(fd)
    assert deleted_files_held(tmp_path) == []
    assert unlink_keeping(str(path)) is None  # nothing there: nothing held, no error


def test_unlink_keeping_lets_go_of_what_it_could_not_remove(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    assert unlink_keeping(str(tmp_path / "dir")) is None  # EISDIR
    assert (tmp_path / "dir").is_dir()
    assert len(os.listdir("/proc/self/fd")) == before


def entry(container_id: str) -> CacheEntry:
    return CacheEntry(container_id=container_id, network_name="net1", if_name="eth0")


async def test_a_removed_entry_is_freed_on_the_freeing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ResultCache(str(tmp_path))
    for i in range(20):
        await cache.write(entry(f"c{i}"))
    closed_by: set[str] = set()
    close = os.close

    def recording_close(fd: int) -> None:
        try:
            if os.fstat(fd).st_nlink == 0:
                closed_by.add(threading.current_thread().name)
        finally:
            close(fd)

    monkeypatch.setattr(os, "close", recording_close)
    for i in range(20):
        await cache.remove("net1", f"c{i}", "eth0")
        assert not os.path.exists(cache.path("net1", f"c{i}", "eth0"))
    assert await cache.attachments() == []
    assert wait_until_freed(tmp_path) == []
    assert closed_by == {"cni_async-freeing"}


def test_a_forked_child_frees_on_a_thread_of_its_own(tmp_path: Path) -> None:
    """The freeing thread does not survive fork(); a forked child that removes files gets one
    (else the child's descriptor would keep its file, and the child would wait in vain)."""
    path = tmp_path / "entry"
    path.write_bytes(b"x")
    freeing_module.free_later(os.open(tmp_path, os.O_RDONLY))  # the parent's thread runs

    def child() -> bool:
        fd = unlink_keeping(str(path))
        if fd is None:
            return False
        freeing_module.free_later(fd)
        return not wait_until_freed(tmp_path)

    assert run_forked(child) == 0
    assert not path.exists()
