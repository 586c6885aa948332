"""The file backend's group commit: batches, per-write answers, failures, two processes.

Writes started in one event-loop tick on an idle store go in two batches: the
first write at once (nothing is running), every other one together while it
runs. The tests count on that order, never on timing.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leaderelection_service.backends.file import FileStore, syscalls
from leaderelection_service.backends.file.encoding import Torn, decode, encode
from leaderelection_service.backends.file.names import file_name
from leaderelection_service.lease_errors import BackendUnavailable, WriteConflict
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import LeaseRecord
from support.procs import REPO

RACER = REPO / "tests" / "support" / "file_racer.py"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(key: str, holder: str = "a", current: LeaseRecord | None = None) -> LeaseRecord:
    if current is not None:
        return current.extended(ttl=30.0, now=NOW)
    return LeaseRecord.new_term(None, key=key, holder=holder, ttl=30.0, now=NOW)


def record_path(root: Path, key: str) -> Path:
    return root / "leases" / f"{file_name(key)}.json"


def spare_path(root: Path, key: str) -> Path:
    return root / "leases" / f"{file_name(key)}.spare"


def files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "leases").glob("*.json"))}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = FileStore(tmp_path)
    try:
        yield s
    finally:
        await s.close()


async def seed(store: FileStore, keys: list[str]) -> dict[str, LeaseRecord]:
    recs = {k: record(k) for k in keys}
    await asyncio.gather(*(store.write(k, r, None) for k, r in recs.items()))
    return recs


async def test_concurrent_writes_on_distinct_keys_each_get_their_own_answer(
    tmp_path: Path, store: FileStore
) -> None:
    leases = CasLeases(store)
    keys = [f"k{i}" for i in range(64)]
    views = await asyncio.gather(*(leases.acquire(k, f"h{i}", 30.0) for i, k in enumerate(keys)))
    assert [(v.record.key, v.record.holder, v.record.fencing_token) for v in views] == [
        (k, f"h{i}", 1) for i, k in enumerate(keys)
    ]
    assert store.batches == 2
    renewed = await asyncio.gather(
        *(leases.renew(k, f"h{i}", 1, 60.0 + i) for i, k in enumerate(keys))
    )
    assert [v.record.ttl for v in renewed] == [60.0 + i for i in range(64)]
    assert store.batches == 4
    reopened = FileStore(tmp_path)
    try:
        for i, k in enumerate(keys):
            got = await reopened.read(k)
            assert got is not None
            assert (got.record.holder, got.record.ttl, got.version) == (f"h{i}", 60.0 + i, 2)
    finally:
        await reopened.close()


async def test_a_conflict_fails_alone_while_the_batch_commits(
    tmp_path: Path, store: FileStore
) -> None:
    recs = await seed(store, ["plug"] + [f"k{i}" for i in range(8)])
    before = files(tmp_path)
    batches = store.batches

    def write(key: str) -> Any:
        expected = 99 if key == "k3" else recs[key].revision  # k3: a stale expectation
        return store.write(key, record(key, current=recs[key]), expected)

    results = await asyncio.gather(
        *(write(k) for k in ["plug"] + [f"k{i}" for i in range(8)]), return_exceptions=True
    )
    assert store.batches == batches + 2  # the plug alone, then the eight together
    assert isinstance(results[4], WriteConflict)
    assert [r for i, r in enumerate(results) if i != 4] == [2] * 8
    after = files(tmp_path)
    assert after[record_path(tmp_path, "k3").name] == before[record_path(tmp_path, "k3").name]
    for k in ["plug", "k0", "k7"]:
        got = await store.read(k)
        assert got is not None and got.version == 2


def fail_pwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", pwrite)


def fail_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    def sync(fd: int) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(syscalls, "syncfs", sync)
    monkeypatch.setattr(os, "fdatasync", sync)


def fail_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    def flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)


@pytest.mark.parametrize("fault", [fail_lock, fail_pwrite, fail_sync], ids=lambda f: f.__name__)
async def test_a_disk_failing_every_write_fails_them_all_and_changes_nothing(
    tmp_path: Path, store: FileStore, monkeypatch: pytest.MonkeyPatch, fault: Any
) -> None:
    keys = [f"k{i}" for i in range(8)]
    recs = await seed(store, keys)
    await asyncio.gather(*(store.write(k, record(k, current=recs[k]), 1) for k in keys[:4]))
    before, fds = files(tmp_path), open_fds()
    with monkeypatch.context() as patch:
        fault(patch)
        results = await asyncio.gather(
            *(
                store.write(k, record(k, current=recs[k]), 2 if i < 4 else 1)
                for i, k in enumerate(keys)
            ),
            return_exceptions=True,
        )
    assert all(isinstance(r, BackendUnavailable) for r in results), results
    assert files(tmp_path) == before
    assert open_fds() == fds
    for i, k in enumerate(keys):  # and the store works again
        assert await store.write(k, record(k, current=recs[k]), 2 if i < 4 else 1) == 2


def block(path: Path) -> None:
    """A real failure of one file: a directory where the file must be (even root
    cannot open a directory for writing)."""
    if path.exists():
        path.unlink()
    path.mkdir()


@pytest.mark.parametrize("sync", ["filesystem", "file"])
@pytest.mark.parametrize("where", ["lock", "spare", "record"])
async def test_one_failed_write_fails_alone_and_the_others_are_durable(
    tmp_path: Path, where: str, sync: str
) -> None:
    store = FileStore(tmp_path, sync=sync)  # type: ignore[arg-type]
    try:
        keys = ["plug"] + [f"k{i}" for i in range(8)]
        recs = {k: record(k, current=r) for k, r in (await seed(store, keys)).items()}
        await asyncio.gather(*(store.write(k, r, 1) for k, r in recs.items()))
        bad = "k3"
        before = await store.read(bad)
        if where == "lock":
            block(tmp_path / "locks" / f"{file_name(bad)}.lock")
        elif where == "spare":
            block(spare_path(tmp_path, bad))
        else:  # a write to a key whose record cannot be read
            block(record_path(tmp_path, bad))
        batches = store.batches
        results = await asyncio.gather(
            *(store.write(k, record(k, current=recs[k]), 2) for k in keys),
            return_exceptions=True,
        )
        assert store.batches == batches + 2  # the plug alone, then the eight together
        assert isinstance(results[4], BackendUnavailable), results
        assert [r for i, r in enumerate(results) if i != 4] == [3] * 8
    finally:
        await store.close()
    reopened = FileStore(tmp_path, sync=sync)  # type: ignore[arg-type]
    try:
        for k in keys:
            got = await reopened.read(k) if k != bad or where != "record" else None
            if k == bad:
                if where != "record":
                    assert got is not None and before is not None
                    assert got.version == before.version == 2  # left as it was
            else:
                assert got is not None and got.version == 3
    finally:
        await reopened.close()


async def test_a_write_whose_data_cannot_be_synced_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--file-sync file: each spare's fdatasync is that write's own step."""
    store = FileStore(tmp_path, sync="file")
    try:
        keys = ["plug"] + [f"k{i}" for i in range(4)]
        recs = await seed(store, keys)
        spare_of_bad = f"{file_name('k2')}.spare"
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(spare_of_bad):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        results = await asyncio.gather(
            *(store.write(k, record(k, current=recs[k]), 1) for k in keys),
            return_exceptions=True,
        )
        assert isinstance(results[3], BackendUnavailable), results
        assert [r for i, r in enumerate(results) if i != 3] == [2] * 4
        got = await store.read("k2")
        assert got is not None and got.version == 1
    finally:
        await store.close()


async def test_file_sync_makes_each_spare_durable_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    fail_sync(monkeypatch)  # syncfs must not be called
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    store = FileStore(tmp_path, sync="file")
    try:
        await seed(store, [f"k{i}" for i in range(5)])
        assert (store.batches, len(synced)) == (2, 5)
    finally:
        await store.close()


async def test_a_torn_read_is_read_again(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    (rec,) = (await seed(store, ["cron"])).values()
    other = encode(record("cron", holder="someone-else-entirely"))
    whole = encode(rec)
    reads: list[bytes] = []

    def read_file(dir_fd: int, name: str) -> bytes:
        # A spare rewritten while read: the start of one record, the rest of another.
        data = whole if reads else other[:40] + whole[40:]
        reads.append(data)
        return data

    monkeypatch.setattr("leaderelection_service.backends.file.store.read_file", read_file)
    got = await store.read("cron")
    assert got is not None and got.record == rec
    assert len(reads) == 2


def test_the_checksum_tells_a_torn_record_from_a_whole_one() -> None:
    first = record("cron", "a")
    a, b = encode(first), encode(LeaseRecord.new_term(first, key="cron", holder="b", ttl=9.5,
                                                      now=NOW.replace(hour=13)))  # fmt: skip
    assert decode(a) == (first.to_storage(), True)
    assert decode(a + b"   ") == decode(a)  # padding over a longer spare's old bytes
    torn = [a[:cut] + b[cut:] for cut in range(1, len(a))] + [a[:cut] for cut in range(len(a))]
    for data in torn:
        if data not in (a, b):
            with pytest.raises(Torn):
                decode(data)
    # An earlier version's record (no checksum) is read as it is.
    plain = json.dumps(record("cron", "a").to_storage()).encode()
    assert decode(plain) == (record("cron", "a").to_storage(), False)


async def test_writes_recycle_the_spare_and_never_an_earlier_versions_record(
    tmp_path: Path, store: FileStore
) -> None:
    rec = record("cron")
    path, spare = record_path(tmp_path, "cron"), spare_path(tmp_path, "cron")
    path.write_bytes(json.dumps(rec.to_storage()).encode())  # as an earlier version wrote it
    old_inode = path.stat().st_ino

    rec = record("cron", current=rec)
    assert await store.write("cron", rec, 1) == 2
    assert decode(path.read_bytes())[1] is True
    assert not spare.exists()  # the earlier version's file was replaced, not kept as a spare
    first_inode = path.stat().st_ino

    rec = record("cron", current=rec)
    assert await store.write("cron", rec, 2) == 3
    assert spare.stat().st_ino == first_inode  # the record became the spare
    assert first_inode != old_inode
    second_inode = path.stat().st_ino

    rec = record("cron", current=rec)
    assert await store.write("cron", rec, 3) == 4
    assert (path.stat().st_ino, spare.stat().st_ino) == (first_inode, second_inode)
    got = await store.read("cron")
    assert got is not None and got.record == rec


async def test_a_caller_cancelled_before_its_batch_is_not_written(
    tmp_path: Path, store: FileStore
) -> None:
    recs = await seed(store, ["plug", "a", "b"])
    before = files(tmp_path)
    tasks = [
        asyncio.ensure_future(store.write(k, record(k, current=recs[k]), 1))
        for k in ["plug", "a", "b"]
    ]
    await asyncio.sleep(0)  # one tick: the plug's batch runs, "a" and "b" wait for the next
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[0] == results[2] == 2
    name = record_path(tmp_path, "a").name
    assert files(tmp_path)[name] == before[name]


def test_two_processes_batching_the_same_keys_never_grant_twice(tmp_path: Path) -> None:
    keys = [f"race{i}" for i in range(200)]
    racing = ",".join(keys)
    racers = [
        subprocess.Popen(
            [sys.executable, str(RACER), str(tmp_path), name, racing],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p", "q")
    ]
    try:
        for r in racers:
            assert r.stdout is not None and r.stdout.readline() == "ready\n"

        def tell(command: str) -> None:
            for r in racers:  # both at once: their batches overlap on the same keys
                assert r.stdin is not None
                r.stdin.write(command + "\n")
                r.stdin.flush()

        def ask(command: str) -> list[dict[str, Any]]:
            tell(command)
            return [json.loads(r.stdout.readline()) for r in racers if r.stdout is not None]

        for term in (1, 2, 3):
            answers = ask(f"acquire {term}")
            for key in keys:
                p, q = answers[0]["outcomes"][key], answers[1]["outcomes"][key]
                assert sorted([p[0], q[0]]) == ["granted", "lease_held"], (key, p, q)
                winner, loser = (p, q) if p[0] == "granted" else (q, p)
                assert winner[1] == term  # tokens 1, 2, 3: one per term, never reused
                assert loser[1:] == winner[1:]  # the loser is told who won
            assert all(a["batches"] < len(keys) * term for a in answers)
            assert sum(len(a) for a in ask("release")) == len(keys)
        tell("exit")
        assert [r.wait(timeout=30) for r in racers] == [0, 0]
    finally:
        for r in racers:
            if r.poll() is None:
                r.kill()
                r.wait()
            for pipe in (r.stdin, r.stdout):
                if pipe is not None:
                    pipe.close()


async def test_listings_at_once_each_see_every_key(store: FileStore) -> None:
    """Watch streams, the watch hub and /v1/leases list in threads at the same time."""
    leases = CasLeases(store)
    keys = [f"k{n:04d}" for n in range(2000)]
    for start in range(0, len(keys), 500):
        await asyncio.gather(*(leases.acquire(k, "a", 60) for k in keys[start : start + 500]))

    async def every_key() -> list[str]:
        out: list[str] = []
        after: str | None = None
        while True:
            page = await store.scan("", after, 500)
            out.extend(r.key for r in page)
            if len(page) < 500:
                return out
            after = page[-1].key

    for listing in await asyncio.gather(*(every_key() for _ in range(8))):
        assert listing == keys
