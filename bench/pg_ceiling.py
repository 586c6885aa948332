"""The database ceiling: the service's compare-and-set statement sent straight to
PostgreSQL with psycopg, at the concurrency the service was loaded with.

Example::

    res = run_pg_ceiling("postgresql://postgres@127.0.0.1:5432/test", op="renew",
                         keys=10_000, connections=64, duration=10)
    res.rps, res.p99_ms

Each connection is one thread holding its own autocommit connection (one
round trip per statement, prepared on first use); threads are spread over
one process per core so that Python's per-statement cost is not the limit.
The statements are the SQL backend's own (``backends.sql.statements``) when
it is installed, else an equivalent pair kept here; the table is a fresh one,
dropped afterwards.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from typing import Any

from bench.targets import NotAvailable
from bench.wrk import WrkResult

COLUMNS = (
    "lease_key, holder, fencing_token, ttl_us, acquired_us, renewed_us, expires_us, "
    "transitions, released, revision, past"
)
NOW = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"


def _ddl(table: str) -> str:
    return f"""CREATE TABLE {table} (
  lease_key varchar(128) COLLATE "C" PRIMARY KEY, holder varchar(256) NOT NULL,
  fencing_token bigint NOT NULL, ttl_us bigint NOT NULL, acquired_us bigint NOT NULL,
  renewed_us bigint NOT NULL, expires_us bigint NOT NULL, transitions bigint NOT NULL,
  released boolean NOT NULL, revision bigint NOT NULL, past jsonb NOT NULL)"""


def statements(table: str) -> tuple[str, str, str]:
    """(acquire, renew, where they come from)."""
    try:
        from leaderelection_service.backends.sql.statements import statements_for
    except ImportError:
        pass
    else:
        st = statements_for("postgresql", table, f"bench_{table}")
        return st.acquire, st.renew, "backends.sql.statements"
    free = f"(r.released OR r.expires_us + %(allow_us)s <= {NOW})"
    acquire = f"""INSERT INTO {table} AS r ({COLUMNS})
VALUES (%(key)s, %(holder)s, 1, %(ttl_us)s, {NOW}, {NOW}, {NOW} + %(ttl_us)s, 0, FALSE, 1, '[]')
ON CONFLICT (lease_key) DO UPDATE SET holder = excluded.holder,
  fencing_token = CASE WHEN {free} THEN r.fencing_token + 1 ELSE r.fencing_token END,
  ttl_us = excluded.ttl_us, renewed_us = excluded.renewed_us, expires_us = excluded.expires_us,
  released = FALSE, revision = r.revision + 1
WHERE {free} OR r.holder = excluded.holder
RETURNING {COLUMNS}, {NOW} AS now_us"""
    renew = f"""UPDATE {table} SET ttl_us = COALESCE(%(ttl_us)s, ttl_us), renewed_us = {NOW},
  expires_us = {NOW} + COALESCE(%(ttl_us)s, ttl_us), revision = revision + 1
WHERE lease_key = %(key)s AND holder = %(holder)s AND fencing_token = %(token)s
  AND NOT released
RETURNING {COLUMNS}, {NOW} AS now_us"""
    return acquire, renew, "bench.pg_ceiling (equivalent statements)"


def _key(i: int, keys: int) -> str:
    return "hot" if keys == 1 else f"k{i}"


def _params(i: int, keys: int) -> dict[str, Any]:
    return {
        "key": _key(i, keys),
        "holder": "bench",
        "token": 1,
        "ttl_us": 15_000_000,
        "allow_us": 0,
    }


def _worker(
    dsn: str, sql: str, keys: int, first: int, step: int, nthreads: int, duration: float, q: Any
) -> None:
    import psycopg

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(nthreads + 1)
    stop_at = [0.0]

    def run(t: int) -> None:
        try:
            conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
        except psycopg.Error:
            start.abort()  # every thread stops: a partial concurrency is no measurement
            raise
        mine: list[float] = []
        err = 0
        n = 0
        my_keys = list(range(first + t * step, keys, step * nthreads)) or [0]
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            conn.close()
            return
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                break
            try:
                conn.execute(sql, _params(my_keys[n % len(my_keys)], keys)).fetchall()
            except psycopg.Error:
                err += 1
            mine.append(time.perf_counter() - t0)
            n += 1
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += err

    threads = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    stop_at[0] = time.perf_counter() + 0.5 + duration  # connect first, then run
    try:
        start.wait(timeout=60)
    except threading.BrokenBarrierError:
        errors[0] = -1
    for th in threads:
        th.join()
    q.put((lat, errors[0]))


def run_pg_ceiling(
    dsn: str, *, op: str, keys: int, connections: int, duration: float
) -> tuple[WrkResult, str]:
    """Run the raw statement; returns the result and where the statement came from."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
        ).fetchone()
    free = row[0] if row else 0
    if free < connections + 10:  # the server is shared: leave others room
        raise NotAvailable(
            f"PostgreSQL has {free} free connections; {connections} would starve other clients"
        )
    table = f"bench_ceiling_{uuid.uuid4().hex[:8]}"
    acquire, renew, origin = statements(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_ddl(table))
        for i in range(keys):
            conn.execute(acquire, _params(i, keys)) if keys < 100 else None
        if keys >= 100:
            with conn.cursor() as cur:
                cur.executemany(acquire, [_params(i, keys) for i in range(keys)])
    try:
        sql = renew if op == "renew" else acquire
        procs = max(1, min(os.cpu_count() or 1, connections))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        workers = []
        for p in range(procs):
            n = connections // procs + (1 if p < connections % procs else 0)
            args = (dsn, sql, keys, p, procs, n, duration, q)
            workers.append(ctx.Process(target=_worker, args=args))
        t0 = time.monotonic()
        for w in workers:
            w.start()
        lat: list[float] = []
        errors = 0
        broken = False
        for _ in workers:
            got, err = q.get(timeout=duration + 120)
            lat.extend(got)
            broken |= err < 0
            errors += max(err, 0)
        for w in workers:
            w.join()
        elapsed = max(duration, time.monotonic() - t0 - 0.5)
        if broken:
            raise NotAvailable(f"could not open {connections} connections to PostgreSQL")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0.0

    res = WrkResult(
        requests=len(lat),
        seconds=min(elapsed, duration),
        ok=len(lat) - errors,
        conflict=0,
        errors=errors,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=lat[-1] * 1000 if lat else 0.0,
    )
    return res, origin
