"""Renewal throughput of the PostgreSQL backend, batched or one statement each.

    .venv/bin/python bench/sql_renew_batch.py [postgresql://postgres@127.0.0.1/test] [--keys 10000]

In process (no HTTP): acquires KEYS keys, then TASKS asyncio tasks renew
random keys for SECONDS, once with renewals folded into batches and once with
one statement per renewal, and prints renewals/s, statements run and p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time

from leaderelection_service.backends.sql import SqlLeases


async def run(url: str, keys: int, tasks: int, seconds: float, batch: bool) -> None:
    table = f"bench_{secrets.token_hex(4)}"
    backend = SqlLeases(url, table=table, pool_size=16, batch_renewals=batch)
    try:
        tokens = {}
        for i in range(keys):
            tokens[f"k{i}"] = (await backend.acquire(f"k{i}", f"h{i}", 3600.0)).record.fencing_token
        latencies: list[float] = []
        stop = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop:
                i = random.randrange(keys)
                t = time.monotonic()
                await backend.renew(f"k{i}", f"h{i}", tokens[f"k{i}"], 3600.0)
                latencies.append(time.monotonic() - t)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        took = time.monotonic() - start
        latencies.sort()
        statements = backend._batcher.batches if backend._batcher else len(latencies)
        print(
            f"{'batched' if batch else 'single ':8s} {len(latencies) / took:7.0f} renewals/s "
            f"{statements:6d} statements  p50 {latencies[len(latencies) // 2] * 1000:5.1f} ms "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:6.1f} ms "
            f"({tasks} tasks, {keys} keys, {seconds:g} s)"
        )
    finally:
        with backend.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {table}, {table}_meta")
        await backend.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url", nargs="?", default="postgresql://postgres@127.0.0.1/test")
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    for batch in (False, True):
        asyncio.run(run(args.url, args.keys, args.tasks, args.seconds, batch))


if __name__ == "__main__":
    main()
