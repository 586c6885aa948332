"""Which engine path for the SQL backend: CPU and wall time per renew, in process.

    .venv/bin/python bench/sql_engines.py [postgresql://postgres@127.0.0.1/test] [--uvloop]

Runs N renewals (one statement each, no batching) from C concurrent asyncio
tasks over 1,000 keys through:
  sync-raw     : SQLAlchemy sync pool, driver cursor, anyio worker thread
                 (what SqlLeases does for SQLite and MariaDB)
  sync-core    : SQLAlchemy sync Connection.exec_driver_sql in a worker thread
  async-raw    : SQLAlchemy async engine pool, psycopg AsyncConnection cursor
  async-core   : SQLAlchemy async engine, AsyncConnection.exec_driver_sql (autocommit)
  psycopg-pool : psycopg_pool.AsyncConnectionPool, autocommit, prepared, in the loop
  pg-async     : backends.sql.postgresql.PgPool, autocommit, prepared, in the loop
                 (what SqlLeases does for PostgreSQL)
and prints ops/s and process CPU ms per op. ``--uvloop`` runs on the event
loop the service uses.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

import anyio
import anyio.to_thread
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from leaderelection_service.backends.sql.postgresql import PgPool

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
URL = ARGS[0] if ARGS else "postgresql+psycopg://postgres@127.0.0.1/test"
URL = URL.replace("postgresql://", "postgresql+psycopg://")
DSN = URL.replace("postgresql+psycopg://", "postgresql://")
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

    ppool = AsyncConnectionPool(
        DSN, min_size=C, max_size=C, kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
    )  # fmt: skip

    async def psycopg_pool(k: str) -> None:
        async with ppool.connection() as conn:
            cur = await conn.execute(SQL, {"k": k})
            await cur.fetchone()

    own = PgPool(DSN, C)

    async def pg_async(k: str) -> None:
        conn, epoch = await own.take()
        try:
            cur = conn.cursor()
            await cur.execute(SQL, {"k": k})
            await cur.fetchone()
        finally:
            await own.give(conn, epoch)

    try:
        for name, op in [
            ("sync-raw", sync_raw),
            ("sync-core", sync_core),
            ("async-raw", async_raw),
            ("async-core", async_core),
            ("psycopg-pool", psycopg_pool),
            ("pg-async", pg_async),
        ]:
            if name == "psycopg-pool":
                await ppool.open(wait=True)
            await drive(op)  # warm the pool and psycopg's prepared statements
            rate, cpu = await drive(op)
            print(f"{name:12s} {rate:7.0f} ops/s  {cpu:5.2f} ms CPU/op  ({C} tasks, {N} renewals)")
            # Each path's connections go before the next path's come (max_connections).
            if name == "sync-core":
                await anyio.to_thread.run_sync(sync.dispose)
            elif name == "async-core":
                await aeng.dispose()
            elif name == "psycopg-pool":
                await ppool.close()
    finally:
        await ppool.close()
        await own.close()
        await aeng.dispose()
        with sync.connect() as c:
            c.exec_driver_sql(f"DROP TABLE {TABLE}")
        sync.dispose()


if "--uvloop" in sys.argv:
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
