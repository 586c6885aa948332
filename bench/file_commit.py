"""Write throughput of the file backend's group commit, in process (no HTTP).

    .venv/bin/python bench/file_commit.py [--keys 10000] [--tasks 64] [--seconds 5] [--dir DIR]

Acquires KEYS keys in a fresh directory (under DIR, default the current
directory: the disk to measure, not a tmpfs), then TASKS asyncio tasks renew
random keys through ``CasLeases`` for SECONDS: with reads in the event loop
(the backend as it is) under either ``--file-sync`` mode, then with each read
handed to a worker thread. Prints renewals/s, batches, the mean batch, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time

import anyio.to_thread

from leaderelection_service.backends.file import FileStore
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.storage import Versioned


class ThreadReadStore(FileStore):
    async def read(self, key: str) -> Versioned | None:
        return await anyio.to_thread.run_sync(self._read_now, key)


async def run(store: FileStore, label: str, keys: int, tasks: int, seconds: float) -> None:
    leases = CasLeases(store)
    try:
        tokens = {}
        for i in range(keys):
            tokens[i] = (await leases.acquire(f"k{i}", f"h{i}", 3600.0)).record.fencing_token
        latencies: list[float] = []
        batches_before = store.batches
        stop = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop:
                i = random.randrange(keys)
                t = time.monotonic()
                await leases.renew(f"k{i}", f"h{i}", tokens[i], 3600.0)
                latencies.append(time.monotonic() - t)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        took = time.monotonic() - start
        latencies.sort()
        batches = store.batches - batches_before
        print(
            f"{label:24s} {len(latencies) / took:7.0f} renewals/s {batches:6d} batches "
            f"(mean {len(latencies) / max(batches, 1):5.1f})  "
            f"p50 {latencies[len(latencies) // 2] * 1000:5.1f} ms "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:6.1f} ms "
            f"({tasks} tasks, {keys} keys, {seconds:g} s)"
        )
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--dir", default=".")
    args = ap.parse_args()
    variants = [
        ("syncfs, inline reads", FileStore, "filesystem"),
        ("fdatasync, inline reads", FileStore, "file"),
        ("syncfs, thread reads", ThreadReadStore, "filesystem"),
    ]
    for label, kind, sync in variants:
        with tempfile.TemporaryDirectory(prefix="bench-file-", dir=args.dir) as d:
            asyncio.run(run(kind(d, sync=sync), label, args.keys, args.tasks, args.seconds))


if __name__ == "__main__":
    main()
