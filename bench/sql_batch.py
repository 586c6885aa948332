"""Acquire and renew throughput of the PostgreSQL backend, batched or one statement each.

    .venv/bin/python bench/sql_batch.py [postgresql://postgres@127.0.0.1/test] [--keys 10000]

In process (no HTTP): acquires KEYS keys, then TASKS asyncio tasks call
``renew`` (or ``acquire``, the holder's own: an extension, a write) on random
keys for SECONDS, once with calls folded into batches and once with one
statement per call, and prints calls/s, statements run, the service
process's CPU per call and p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time

from leaderelection_service.backends.sql import SqlLeases
from leaderelection_service.backends.sql.postgresql import PgSql


async def run(
    url: str, op: str, keys: int, tasks: int, seconds: float, batch: bool, pool: int
) -> None:
    table = f"bench_{secrets.token_hex(4)}"
    backend = SqlLeases(url, table=table, pool_size=pool, batch=batch)
    assert isinstance(backend.db, PgSql), "a postgresql:// URL"
    try:
        tokens = {}
        for i in range(keys):
            tokens[f"k{i}"] = (await backend.acquire(f"k{i}", f"h{i}", 3600.0)).record.fencing_token
        batcher = backend.db.renewals if op == "renew" else backend.db.acquires
        before = batcher.batches if batcher else 0
        latencies: list[float] = []
        stop = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop:
                i = random.randrange(keys)
                t = time.monotonic()
                if op == "renew":
                    await backend.renew(f"k{i}", f"h{i}", tokens[f"k{i}"], 3600.0)
                else:
                    await backend.acquire(f"k{i}", f"h{i}", 3600.0)
                latencies.append(time.monotonic() - t)

        start, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        took, cpu = time.monotonic() - start, time.process_time() - cpu
        latencies.sort()
        n = len(latencies)
        statements = batcher.batches - before if batcher else n
        print(
            f"{op:7s} {'batched' if batch else 'single ':8s} {n / took:7.0f}/s "
            f"{statements:6d} statements  {cpu / n * 1000:5.3f} ms CPU/call  "
            f"p50 {latencies[n // 2] * 1000:5.1f} ms p99 {latencies[int(n * 0.99)] * 1000:6.1f} ms "
            f"({tasks} tasks, {keys} keys, pool {pool}, {seconds:g} s)"
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
    ap.add_argument("--ops", default="renew,acquire")
    ap.add_argument("--pool", type=int, default=10, help="--sql-pool-size (default 10)")
    ap.add_argument("--single", action="store_true", help="the single statements too")
    ap.add_argument("--uvloop", action="store_true", help="the event loop the service runs on")
    args = ap.parse_args()
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    for op in args.ops.split(","):
        for batch in (False, True) if args.single else (True,):
            main = run(args.url, op, args.keys, args.tasks, args.seconds, batch, args.pool)
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main)


if __name__ == "__main__":
    main()
