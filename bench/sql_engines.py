"""Which engine path for the SQL backend: CPU and wall time per renew, in process.

    .venv/bin/python bench/sql_engines.py [postgresql://postgres@127.0.0.1/test]

Runs N renewals from C concurrent asyncio tasks over 1,000 keys through:
  sync-raw    : SQLAlchemy sync pool, driver cursor, anyio worker thread (what SqlLeases does)
  sync-core   : SQLAlchemy sync Connection.exec_driver_sql in a worker thread
  async-raw   : SQLAlchemy async engine pool, psycopg AsyncConnection cursor
  async-core  : SQLAlchemy async engine, AsyncConnection.exec_driver_sql (autocommit)
and prints ops/s and process CPU ms per op.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

import anyio
import anyio.to_thread
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1/test"
URL = URL.replace("postgresql://", "postgresql+psycopg://")
N, C, KEYS = 3000, 32, 1000
TABLE = f"bench_{secrets.token_hex(4)}"
SQL = (
    f"UPDATE {TABLE} SET"
    " renewed_us = (extract(epoch FROM statement_timestamp()) * 1000000)::bigint,"
    " revision = revision + 1 WHERE k = %(k)s RETURNING k, revision"
)


async def drive(op) -> tuple[float, float]:
    sem = asyncio.Semaphore(C)

    async def one(i: int) -> None:
        async with sem:
            await op(f"k{i % KEYS}")

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(one(i) for i in range(N)))
    return N / (time.monotonic() - wall), (time.process_time() - cpu) / N * 1000


async def main() -> None:
    sync = create_engine(URL, pool_size=C, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
    with sync.connect() as c:
        c.exec_driver_sql(
            f"CREATE TABLE {TABLE} (k text primary key, renewed_us bigint, revision bigint)"
        )
        c.exec_driver_sql(
            f"INSERT INTO {TABLE} SELECT 'k' || i, 0, 0 FROM generate_series(0, {KEYS - 1}) i"
        )
    limiter = anyio.CapacityLimiter(C)

    def raw(k: str) -> None:
        conn = sync.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(SQL, {"k": k})
            cur.fetchone()
        finally:
            conn.close()

    def core(k: str) -> None:
        with sync.connect() as conn:
            conn.exec_driver_sql(SQL, {"k": k}).fetchone()

    async def sync_raw(k: str) -> None:
        await anyio.to_thread.run_sync(raw, k, limiter=limiter)

    async def sync_core(k: str) -> None:
        await anyio.to_thread.run_sync(core, k, limiter=limiter)

    aeng = create_async_engine(
        URL, pool_size=C, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
    )

    async def async_raw(k: str) -> None:
        async with aeng.connect() as conn:
            raw_conn = await conn.get_raw_connection()
            async with raw_conn.driver_connection.cursor() as cur:
                await cur.execute(SQL, {"k": k})
                await cur.fetchone()

    async def async_core(k: str) -> None:
        async with aeng.connect() as conn:
            (await conn.exec_driver_sql(SQL, {"k": k})).fetchone()

    try:
        for name, op in [
            ("sync-raw", sync_raw),
            ("sync-core", sync_core),
            ("async-raw", async_raw),
            ("async-core", async_core),
        ]:
            await drive(op)  # warm the pool and psycopg's prepared statements
            rate, cpu = await drive(op)
            print(f"{name:11s} {rate:7.0f} ops/s  {cpu:5.2f} ms CPU/op  ({C} tasks, {N} renewals)")
    finally:
        await aeng.dispose()
        with sync.connect() as c:
            c.exec_driver_sql(f"DROP TABLE {TABLE}")
        sync.dispose()


asyncio.run(main())
