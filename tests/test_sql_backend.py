"""The SQL backend beyond the contract suite: schema, history, notifications, outages.

The contract suite (``test_contract.py``) already runs on PostgreSQL, SQLite
and MariaDB. Here: the same history as the lease rules produce, schema
creation and ``leaderelection migrate``, validated table names, LISTEN/NOTIFY
between two processes' backends, and 503 answers when the database is away.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, Table

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.backends.sql import SqlLeases, migrate_url
from leaderelection_service.backends.sql.engine import make_engine
from leaderelection_service.backends.sql.postgresql import PgSql
from leaderelection_service.backends.sql.schema import (
    ADDED_FOR_TRANSFER,
    ADDED_IN_2,
    SCHEMA_VERSION,
    SEMAPHORE_COLUMNS,
    TableNames,
    tables,
)
from leaderelection_service.lease_errors import BackendUnavailable, LeaseLost
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import HISTORY_LIMIT
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend
from support.procs import REPO, ServiceProcess, free_port

SQL = ["postgres", "sqlite", "mysql"]


@pytest.fixture(params=SQL)
def sql_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def _play(backend: LeaseBackend, terms: int) -> list[tuple[str, int, str | None]]:
    """Terms ended by release or by lapse; the history the backend then reports."""
    for i in range(terms):
        holder = f"h{i % 3}"
        view = await backend.acquire("k", holder, 0.2 if i % 4 == 3 else 60.0)
        await backend.renew("k", holder, view.record.fencing_token, None)
        if i % 4 == 3:
            deadline = time.monotonic() + 10
            while (await backend.get("k")).held and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        else:
            await backend.release("k", holder, view.record.fencing_token)
    rec = (await backend.get("k")).record
    assert rec.revision == 3 * terms - terms // 4
    return [(t.holder, t.fencing_token, t.ended_by) for t in rec.history]


async def test_history_and_revision_match_the_lease_rules(sql_url: str) -> None:
    terms = HISTORY_LIMIT + 5
    sql = SqlLeases(sql_url)
    mem = CasLeases(MemoryStore())
    try:
        got = await _play(sql, terms)
    finally:
        await sql.close()
    want = await _play(mem, terms)
    assert len(got) == HISTORY_LIMIT
    assert got == want
    assert got[-1] == (f"h{(terms - 1) % 3}", terms, "released")


async def test_schema_is_left_alone_when_creation_is_off(sql_url: str) -> None:
    backend = SqlLeases(sql_url, table="no_ddl_here", create_schema=False)
    try:
        with pytest.raises(BackendUnavailable) as err:
            await backend.acquire("k", "a", 5.0)
        assert "leaderelection migrate" in err.value.message
        assert migrate_url(sql_url, table="no_ddl_here", schema=None) == (0, SCHEMA_VERSION)
        assert migrate_url(sql_url, table="no_ddl_here", schema=None) == (
            SCHEMA_VERSION,
            SCHEMA_VERSION,
        )
        assert (await backend.acquire("k", "a", 5.0)).record.fencing_token == 1
    finally:
        await backend.close()


def _version_1_table(url: str, table: str, version: int = 1) -> None:
    """A table as schema version 1 (no value columns) or 2 (no successor) made it,
    with one released lease."""
    missing = ADDED_FOR_TRANSFER + (ADDED_IN_2 if version == 1 else ())
    engine = make_engine(url, pool_size=1)
    try:
        leases, meta = tables(TableNames.of(table))
        old = Table(
            table,
            MetaData(),
            *(
                c._copy()
                for c in leases.columns
                if c.name not in missing and c.name not in SEMAPHORE_COLUMNS
            ),
            **leases.kwargs,
        )
        with engine.begin() as conn:
            old.create(conn)
            meta.create(conn)
            conn.execute(meta.insert().values(name="schema_version", value=str(version)))
            conn.execute(
                old.insert().values(
                    lease_key="k", holder="old", fencing_token=7, ttl_us=5_000_000,
                    acquired_us=1, renewed_us=1, expires_us=2, transitions=3,
                    released=True, revision=9, past=[],
                )
            )  # fmt: skip
    finally:
        engine.dispose()


async def test_migrate_adds_the_value_columns_to_a_version_1_table(sql_url: str) -> None:
    table = f"v1_{secrets.token_hex(4)}"
    _version_1_table(sql_url, table)
    backend = SqlLeases(sql_url, table=table, create_schema=False)
    try:
        with pytest.raises(BackendUnavailable) as err:
            await backend.get("k")
        assert "schema version 1" in err.value.message and "migrate" in err.value.message
        assert migrate_url(sql_url, table=table, schema=None) == (1, SCHEMA_VERSION)
        assert migrate_url(sql_url, table=table, schema=None) == (SCHEMA_VERSION, SCHEMA_VERSION)
        kept = (await backend.get("k")).record
        assert (kept.fencing_token, kept.holder, kept.value, kept.announced) == (
            7,
            "old",
            None,
            False,
        )
        view = await backend.acquire("k", "new", 5.0, "after the upgrade")
        assert (view.record.fencing_token, view.record.value) == (8, "after the upgrade")
        assert [t.value for t in view.record.history] == [None, "after the upgrade"]
        # The floor came with the upgrade: a deleted key continues above its tokens.
        await backend.release("k", "new", 8)
        await backend.delete("k")
        assert (await backend.acquire("k", "again", 5.0)).record.fencing_token > 8
    finally:
        await backend.close()


async def test_migrate_adds_the_successor_column_to_a_version_2_table(sql_url: str) -> None:
    table = f"v2_{secrets.token_hex(4)}"
    _version_1_table(sql_url, table, version=2)
    backend = SqlLeases(sql_url, table=table, create_schema=False)
    try:
        assert migrate_url(sql_url, table=table, schema=None) == (2, SCHEMA_VERSION)
        kept = (await backend.get("k")).record
        assert (kept.fencing_token, kept.holder, kept.successor) == (7, "old", None)
        view = await backend.acquire("k", "new", 5.0)
        moved = await backend.transfer("k", "next", "new", view.record.fencing_token)
        assert moved.record.successor == "next" and moved.record.fencing_token == 8
    finally:
        await backend.close()


def test_migrate_command(postgres_url: str) -> None:
    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "leaderelection_service.cli", "migrate", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)

    done = migrate("--backend-url", postgres_url, "--sql-table", "by_operator")
    assert done.returncode == 0, done.stderr
    assert (
        f"schema version {SCHEMA_VERSION}" in done.stdout
        and "upgraded from version 0" in done.stdout
    )
    bad = migrate("--backend-url", postgres_url, "--sql-table", "x; DROP TABLE y")
    assert bad.returncode != 0 and "identifier" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("name", ["x; DROP TABLE y", "1abc", "a-b", "", "q" * 49, 'a"b'])
def test_table_and_schema_names_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        SqlLeases("sqlite:////tmp/never-opened.db", table=name)
    with pytest.raises(ValueError, match="identifier"):
        Settings(backend_url="sqlite:////tmp/x.db", sql_table=name or "-")
    if name:
        with pytest.raises(ValueError, match="identifier"):
            SqlLeases("sqlite:////tmp/never-opened.db", schema=name)


_DRIVERS_LOADED = """
import asyncio, sys
from leaderelection_service.backends.sql import SqlLeases

async def main(url: str) -> None:
    leases = SqlLeases(url)
    if url.startswith("sqlite"):  # no server needed: run a statement too
        view = await leases.acquire("k", "h", 5.0)
        await leases.renew("k", "h", view.record.fencing_token, None)
    await leases.close()

asyncio.run(main(sys.argv[1]))
print(",".join(m for m in ("psycopg", "pymysql") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("url", "loaded"),
    [
        ("sqlite:///{tmp}/leases.db", ""),
        ("postgresql://nobody@127.0.0.1:9/none", "psycopg"),  # opened, never connected
        ("mariadb+pymysql://nobody@127.0.0.1:9/none", "pymysql"),
    ],
)
def test_a_driver_is_imported_only_when_its_scheme_is_opened(
    url: str, loaded: str, tmp_path: Path
) -> None:
    """In a fresh interpreter (other tests have imported every driver here)."""
    run = subprocess.run(
        [sys.executable, "-c", _DRIVERS_LOADED, url.format(tmp=tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == loaded


def test_unsupported_sql_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SQL URL"):
        SqlLeases("postgresql+asyncpg://db/x")
    with pytest.raises(ValueError, match="must name a file"):
        SqlLeases("sqlite://")


async def test_postgres_notify_wakes_another_process_backend(postgres_url: str) -> None:
    waiter, writer = SqlLeases(postgres_url), SqlLeases(postgres_url)
    try:
        await waiter.ping()
        wait = asyncio.create_task(waiter.wait_for_change(30.0))
        while waiter._listener is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(waiter._listener.connected.wait(), 10)
        # Its first connection says "unknown": writes made before it listened.
        assert await asyncio.wait_for(wait, 10) is None
        wait = asyncio.create_task(waiter.wait_for_change(30.0))
        started = time.monotonic()
        await writer.acquire("k", "a", 5.0)
        assert await asyncio.wait_for(wait, 10) == {"k"}  # the key, from NOTIFY's payload
        assert time.monotonic() - started < 5  # woken by NOTIFY, not the 30 s timeout
    finally:
        await waiter.close()
        await writer.close()


async def test_own_writes_wake_waiters(sqlite_url: str) -> None:
    backend = SqlLeases(sqlite_url)
    try:
        wait = asyncio.create_task(backend.wait_for_change(30.0))
        await asyncio.sleep(0)  # let the waiter start waiting
        started = time.monotonic()
        await backend.acquire("k", "a", 5.0)
        assert await asyncio.wait_for(wait, 10) == {"k"}
        assert time.monotonic() - started < 5
    finally:
        await backend.close()


async def test_unreachable_database_is_backend_unavailable() -> None:
    backend = SqlLeases(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(BackendUnavailable):
            await backend.acquire("k", "a", 5.0)
        with pytest.raises(BackendUnavailable):
            await backend.ping()
    finally:
        await backend.close()


def test_service_answers_503_while_the_database_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    with ServiceProcess(url, log_path=tmp_path / "svc.log") as svc:
        resp = httpx.post(
            svc.url + "/v1/leases/k/acquire", json={"holder": "a", "ttl": 5}, timeout=30
        )
        assert resp.status_code == 503
        assert resp.json()["error"] == "backend_unavailable"
        assert int(resp.headers["retry-after"]) >= 1
        assert httpx.get(svc.url + "/readyz", timeout=30).status_code == 503
        assert httpx.get(svc.url + "/healthz", timeout=30).status_code == 200


async def test_concurrent_renewals_are_batched_and_each_gets_its_own_answer(
    postgres_url: str,
) -> None:
    backend = SqlLeases(postgres_url, pool_size=2)
    try:
        views = [await backend.acquire(f"k{i}", f"h{i}", 60.0) for i in range(40)]

        async def renew(i: int) -> tuple[int, str, int]:
            token = views[i].record.fencing_token + (1 if i % 5 == 0 else 0)
            try:
                v = await backend.renew(f"k{i}", f"h{i}", token, 30.0)
            except LeaseLost as err:
                assert err.lease is not None and err.lease.record.holder == f"h{i}"
                return i, "lost", err.lease.record.revision
            assert v.record.key == f"k{i}" and v.record.holder == f"h{i}" and v.held
            assert v.record.ttl == 30.0 and v.record.fencing_token == token
            return i, "ok", v.record.revision

        results = await asyncio.gather(*(renew(i) for i in range(40) for _ in range(3)))
        for i, outcome, _ in results:
            assert outcome == ("lost" if i % 5 == 0 else "ok")
        renewals = backend.db.renewals if isinstance(backend.db, PgSql) else None
        assert renewals is not None and renewals.batches < len(results)
        for i in range(40):  # every granted renewal wrote once: revisions 2, 3, 4
            revs = sorted(r for j, o, r in results if j == i and o == "ok")
            assert revs == ([] if i % 5 == 0 else [2, 3, 4])
            assert (await backend.get(f"k{i}")).record.revision == (1 if i % 5 == 0 else 4)
    finally:
        await backend.close()
