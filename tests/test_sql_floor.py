"""The token floor on real PostgreSQL, with the dangerous interleavings forced.

A delete's transaction is held open (from a separate connection, running the
backend's own delete statements) between its floor raise and its commit while
an acquire of the same key runs: the acquire must wait for the commit, then
answer a token above the deleted one, never the floor of a snapshot taken
before the commit (fencing, I2). And the other order: an acquire's
transaction holding the key's shared lock makes a delete wait, and the delete
then finds the lease held. Waiting is observed in ``pg_locks``, not assumed
after a sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import make_url

from leaderelection_service.backends.sql import SqlLeases
from leaderelection_service.backends.sql.floor import lock_tag
from leaderelection_service.backends.sql.postgresql import lease_rows
from leaderelection_service.backends.sql.rows import to_view
from leaderelection_service.lease_errors import LeaseHeld
from leaderelection_service.token_floor import floor_after


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=["single", "batch"])
async def pg(request: pytest.FixtureRequest, postgres_url: str) -> AsyncIterator[SqlLeases]:
    backend = SqlLeases(postgres_url, batch=request.param == "batch")
    try:
        yield backend
    finally:
        await backend.close()


async def _waiting_on_a_lock(conninfo: str, timeout: float = 10.0) -> None:
    """Return once some session waits for a lock (the key's advisory lock, or with a
    weaker design its row); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            cur = await watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("nobody waited for a lock")


async def _terms(backend: SqlLeases, key: str, n: int) -> int:
    token = 0
    for i in range(n):
        view = await backend.acquire(key, f"h{i}", 30.0)
        token = view.record.fencing_token
        await backend.release(key, f"h{i}", token)
    return token


async def test_an_acquire_during_an_open_delete_waits_and_answers_above_the_floor(
    pg: SqlLeases, postgres_url: str
) -> None:
    key = "job.41"
    deleted = await _terms(pg, key, 3)
    fl, st = pg.floor, pg.st
    conninfo = _conninfo(postgres_url)
    async with await psycopg.AsyncConnection.connect(conninfo) as deleter:
        # The backend's delete, statement by statement, left uncommitted.
        lock = lock_tag(pg.names) + key
        await deleter.execute(fl.lock, {"lock": lock})
        cur = deleter.cursor(row_factory=lease_rows)
        await cur.execute(st.get + fl.lock_row, {"key": key})
        row = await cur.fetchone()
        assert row is not None and row.fencing_token == deleted
        params: dict[str, Any] = {"key": key, "at_least": floor_after(to_view(row, 0).record)}
        await deleter.execute(fl.raise_floor, params)
        await deleter.execute(fl.delete, params)

        acquiring = asyncio.create_task(pg.acquire(key, "late", 30.0))
        await _waiting_on_a_lock(conninfo)
        assert not acquiring.done()  # blocked behind the open delete
        await deleter.commit()
    view = await asyncio.wait_for(acquiring, 10)
    assert view.record.fencing_token > deleted
    assert view.record.transitions == 0  # a first record: the key was gone


async def test_a_delete_during_an_open_acquire_waits_and_finds_the_lease_held(
    pg: SqlLeases, postgres_url: str
) -> None:
    key = "job.42"
    last = await _terms(pg, key, 2)
    conninfo = _conninfo(postgres_url)
    async with await psycopg.AsyncConnection.connect(conninfo) as acquirer:
        # The acquire's own statement (shared lock, then the new term), uncommitted.
        params = {"key": key, "holder": "early", "ttl_us": 30_000_000, "allow_us": 0}
        await acquirer.execute(pg.st.acquire, params | {"value": None})
        deleting = asyncio.create_task(pg.delete(key))
        await _waiting_on_a_lock(conninfo)
        assert not deleting.done()
        await acquirer.commit()
    with pytest.raises(LeaseHeld) as err:
        await asyncio.wait_for(deleting, 10)
    assert err.value.lease is not None
    assert (err.value.lease.record.holder, err.value.lease.record.fencing_token) == (
        "early",
        last + 1,
    )


async def test_many_acquires_racing_deletes_never_repeat_a_token(pg: SqlLeases) -> None:
    """Acquire-release-delete cycles of one key from many tasks at once: every term's
    token is distinct and each task's tokens increase."""
    key = "race"
    seen: list[int] = []

    async def cycle(n: int) -> None:
        for _ in range(15):
            try:
                view = await pg.acquire(key, f"t{n}", 30.0)
            except LeaseHeld:
                continue
            seen.append(view.record.fencing_token)
            await pg.release(key, f"t{n}", view.record.fencing_token)
            try:
                await pg.delete(key)
            except LeaseHeld:
                pass
            except Exception as exc:  # not_found: another task deleted it first
                assert exc.__class__.__name__ == "LeaseNotFound"

    await asyncio.gather(*(cycle(n) for n in range(8)))
    assert len(seen) == len(set(seen)) and len(seen) > 8


def _mariadb_connect(url: str, autocommit: bool = False) -> Any:
    import pymysql

    u = make_url(url)
    return pymysql.connect(
        host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
        password=u.password or "", database=u.database, autocommit=autocommit,
    )  # fmt: skip


async def _mariadb_lock_wait(url: str, timeout: float = 10.0) -> None:
    """Return once some InnoDB transaction waits for a lock; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    conn = _mariadb_connect(url, autocommit=True)

    def waiting() -> int:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
            )
            (count,) = cur.fetchone()
        return int(count)

    try:
        while time.monotonic() < deadline:
            if await asyncio.to_thread(waiting):
                return
            # InnoDB refreshes innodb_trx only when it was not read for 0.1 s.
            await asyncio.sleep(0.2)
    finally:
        conn.close()
    raise AssertionError("nobody waited for a lock")


async def test_mariadb_acquire_during_an_open_delete_waits_and_answers_above_the_floor(
    mysql_url: str,
) -> None:
    """InnoDB: the acquire's share-mode read of the floor waits for the delete's lock.

    At the server's default REPEATABLE READ, InnoDB already reads a subquery of
    an INSERT with a shared lock (the test passes without ``LOCK IN SHARE
    MODE``, checked); the explicit clause keeps it so under READ COMMITTED.
    """
    backend = SqlLeases(mysql_url)
    try:
        key = "job.43"
        deleted = await _terms(backend, key, 3)
        fl, st = backend.floor, backend.st
        deleter = _mariadb_connect(mysql_url)
        try:
            with deleter.cursor() as cur:  # the backend's delete, left uncommitted
                cur.execute(st.now)
                cur.execute(fl.lock_floor)
                cur.execute(st.get + fl.lock_row, {"key": key})
                assert cur.fetchone() is not None
                cur.execute(fl.raise_floor, {"at_least": deleted + 10})
                cur.execute(fl.delete, {"key": key})
            acquiring = asyncio.create_task(backend.acquire(key, "late", 30.0))
            await _mariadb_lock_wait(mysql_url)
            assert not acquiring.done()
            deleter.commit()
        finally:
            deleter.close()
        view = await asyncio.wait_for(acquiring, 10)
        assert view.record.fencing_token > deleted
        assert view.record.transitions == 0
    finally:
        await backend.close()
