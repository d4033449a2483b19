"""The group commit of cache writes: batching, isolation of failures, cancellation."""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from cni_async import CacheError
from cni_async._testing import GroupCommit, groupcommit_module

pytestmark = pytest.mark.anyio


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch written."""
    sizes: list[int] = []
    write_batch = groupcommit_module._write_batch

    def counting(batch: list[Any], tmp_dir: str, *rest: Any) -> None:
        sizes.append(len(batch))
        write_batch(batch, tmp_dir, *rest)

    monkeypatch.setattr(groupcommit_module, "_write_batch", counting)
    return sizes


def before_file_fsync(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` before every fsync of a regular file (not of a directory)."""
    fsync = os.fsync

    def patched(fd: int) -> None:
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            action()
        fsync(fd)

    monkeypatch.setattr(os, "fsync", patched)


def slow(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


async def test_concurrent_writes_share_batches(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(commit.write, str(out), str(out / f"f{i}"), b"%d" % i)
    assert batches == [1, 9]  # the first writer leads alone, the others queue behind it
    assert sorted(os.listdir(out)) == sorted(f"f{i}" for i in range(10))
    assert all((out / f"f{i}").read_bytes() == b"%d" % i for i in range(10))
    assert os.listdir(tmp_path / "tmp") == []


async def test_a_failure_stays_with_its_request(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"
    (tmp_path / "file").write_text("")
    failures: dict[str, BaseException] = {}
    after: list[str] = []

    def boom() -> None:
        raise ValueError("lo is down")

    async def write(name: str, directory: Path = out, **hooks: Any) -> None:
        try:
            await commit.write(str(directory), str(directory / name), b"x", **hooks)
        except (ValueError, CacheError) as exc:
            failures[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(write, "lead", before=slow(0.1)))
        await anyio.sleep(0.02)
        tg.start_soon(functools.partial(write, "bad", before=boom))
        tg.start_soon(functools.partial(write, "good", after=lambda: after.append("good")))
        tg.start_soon(functools.partial(write, "unwritable", tmp_path / "file"))
    assert batches == [1, 3]
    assert isinstance(failures.pop("bad"), ValueError)
    assert isinstance(failures.pop("unwritable"), CacheError)
    assert failures == {}
    assert sorted(os.listdir(out)) == ["good", "lead"]
    assert after == ["good"]


async def test_unwritable_directory_is_a_cache_error(tmp_path: Path) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match="writable directory"):
        await commit.write(str(tmp_path / "file"), str(tmp_path / "file" / "x"), b"")


async def test_cancelled_while_queued_writes_nothing(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"

    async def withdrawn() -> None:
        with anyio.move_on_after(0.05) as scope:
            await commit.write(str(out), str(out / "withdrawn"), b"x")
        assert scope.cancelled_caught

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            functools.partial(commit.write, str(out), str(out / "lead"), b"x", before=slow(0.2))
        )
        await anyio.sleep(0.01)
        tg.start_soon(withdrawn)
        tg.start_soon(commit.write, str(out), str(out / "kept"), b"x")
    assert sorted(os.listdir(out)) == ["kept", "lead"]
    assert batches == [1, 1]


async def test_cancelled_in_a_running_batch_waits_for_it(tmp_path: Path) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"
    started = time.monotonic()
    with anyio.move_on_after(0.05) as scope:
        await commit.write(str(out), str(out / "f"), b"x", before=slow(0.2))
        # As with anyio.to_thread.run_sync, the write finishes and the cancellation comes at
        # the next checkpoint.
        assert (out / "f").exists()
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert time.monotonic() - started >= 0.2
    assert (out / "f").read_bytes() == b"x"


async def test_a_cancelled_leader_still_hands_over(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"

    async def leader() -> None:
        with anyio.move_on_after(0.05):
            await commit.write(str(out), str(out / "lead"), b"x", before=slow(0.2))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.sleep(0.01)
            for i in range(3):
                tg.start_soon(commit.write, str(out), str(out / f"f{i}"), b"x")
    assert sorted(os.listdir(out)) == ["f0", "f1", "f2", "lead"]
    assert batches == [1, 3]


async def test_a_cancelled_follower_waits_for_its_batch(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"))
    out = tmp_path / "out"
    started = time.monotonic()

    async def follower() -> None:
        with anyio.move_on_after(0.3) as scope:  # while its batch (0.2 to 0.4 s) is written
            await commit.write(str(out), str(out / "follower"), b"x", before=slow(0.2))
        assert scope.cancelled_caught
        assert time.monotonic() - started >= 0.4
        assert (out / "follower").exists()

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            functools.partial(commit.write, str(out), str(out / "lead"), b"x", before=slow(0.2))
        )
        await anyio.sleep(0.01)
        tg.start_soon(commit.write, str(out), str(out / "next"), b"x")
        await anyio.sleep(0.01)
        tg.start_soon(follower)
    assert batches == [1, 2]
    assert sorted(os.listdir(out)) == ["follower", "lead", "next"]


async def test_unbatched_writes_run_side_by_side(tmp_path: Path, batches: list[int]) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"), batch=False)
    out = tmp_path / "out"
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(
                functools.partial(
                    commit.write, str(out), str(out / f"f{i}"), b"x", before=slow(0.2)
                )
            )
    assert time.monotonic() - started < 0.6  # concurrently, not one after the other
    assert batches == [1, 1, 1, 1]
    assert len(os.listdir(out)) == 4


@pytest.mark.parametrize("name_first", [True, False])
async def test_a_new_file_is_named_before_its_fsync_a_replaced_one_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name_first: bool
) -> None:
    # A new file has nothing to lose to a crash before its fsync ends, and its name then goes
    # to disk in the same journal commit as its data; a file replaced must never be torn.
    commit = GroupCommit(str(tmp_path / "tmp"), name_first=name_first)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_bytes(b"before")
    seen: list[tuple[bytes | None, bytes]] = []  # "new" and "old" at each file's fsync

    def record() -> None:
        new = out / "new"
        seen.append((new.read_bytes() if new.exists() else None, (out / "old").read_bytes()))

    before_file_fsync(monkeypatch, record)
    await commit.write(str(out), str(out / "new"), b"new")
    await commit.write(str(out), str(out / "old"), b"after")
    assert seen == [(b"new" if name_first else None, b"before"), (b"new", b"before")]
    assert (out / "new").read_bytes() == b"new"
    assert (out / "old").read_bytes() == b"after"
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("existing", [False, True])
async def test_a_failed_fsync_leaves_no_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    commit = GroupCommit(str(tmp_path / "tmp"), name_first=True)
    out = tmp_path / "out"
    out.mkdir()
    if existing:
        (out / "f").write_bytes(b"before")

    def fail() -> None:
        raise OSError(errno.EIO, "I/O error")

    before_file_fsync(monkeypatch, fail)
    with pytest.raises(CacheError, match="I/O error"):
        await commit.write(str(out), str(out / "f"), b"after")
    assert os.listdir(out) == (["f"] if existing else [])
    if existing:
        assert (out / "f").read_bytes() == b"before"
    assert os.listdir(tmp_path / "tmp") == []
