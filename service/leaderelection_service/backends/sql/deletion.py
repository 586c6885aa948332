"""Delete on the SQL backends: one transaction that raises the floor and removes the row.

Example::

    outcome, row = await pg_delete(db, fl, "job-41", allowance=0.0)
    # ("deleted", the row as it was) | ("held", the row) | ("absent", None)

The statements and why they keep tokens from repeating are in ``floor.py``.
One transaction, in this order: the key's lock (PostgreSQL: the advisory
lock the acquire's floor function shares; MariaDB: the floor row, which the
acquire reads in share mode), the lease row ``FOR UPDATE`` read with the
database clock, the decision (absent: ``not_found``; held: ``lease_held``),
the floor raised to ``token_floor.floor_after`` of the row, the row deleted,
PostgreSQL's ``NOTIFY``, commit. The decision is taken on the locked row, so
no write can slip between it and the delete. Rejected: one statement with
data-modifying CTEs, whose snapshot would predate the lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from leaderelection_service.backends.sql.floor import FloorSql
from leaderelection_service.backends.sql.rows import LeaseRow, to_view
from leaderelection_service.slots import held_slots
from leaderelection_service.token_floor import floor_after

if TYPE_CHECKING:
    from leaderelection_service.backends.sql.postgresql import PgSql
    from leaderelection_service.backends.sql.threaded import ThreadedSql

Outcome = tuple[Literal["deleted", "held", "absent"], LeaseRow | None]


def _decide(row: LeaseRow | None, allowance: float) -> Literal["deleted", "held", "absent"]:
    if row is None:
        return "absent"
    view = to_view(row, allowance)
    # a semaphore key is held while any of its slots is
    taken = view.held or held_slots(view.record, view.server_time, allowance)
    return "held" if taken else "deleted"


def _params(key: str, row: LeaseRow, lock: str) -> dict[str, Any]:
    return {"key": key, "at_least": floor_after(to_view(row, 0.0).record), "lock": lock}


async def pg_delete(db: PgSql, fl: FloorSql, key: str, lock: str, allowance: float) -> Outcome:
    """On PostgreSQL, through ``db``'s pool and error handling."""
    import psycopg  # only for a PostgreSQL URL

    from leaderelection_service.backends.sql.postgresql import lease_rows

    async def run(conn: psycopg.AsyncConnection[Any]) -> Outcome:
        async with conn.transaction():
            await conn.execute(fl.lock, {"lock": lock})
            cur = conn.cursor(row_factory=lease_rows)
            await cur.execute(db.st.get + fl.lock_row, {"key": key})
            row = await cur.fetchone()
            outcome = _decide(row, allowance)
            if outcome != "deleted" or row is None:
                return outcome, row
            params = _params(key, row, lock)
            await conn.execute(fl.raise_floor, params)
            await conn.execute(fl.delete, params)
            await conn.execute(fl.notify, params)
        return outcome, row

    return await db.in_transaction(run)


async def threaded_delete(db: ThreadedSql, fl: FloorSql, key: str, allowance: float) -> Outcome:
    """On SQLite and MariaDB, in one of ``db``'s worker threads."""
    from leaderelection_service.backends.sql.threaded import _reader

    def run(cur: Any) -> Outcome:
        cur.execute(fl.begin)
        try:
            if db.st.two_step:
                cur.execute(db.st.now)
            if fl.lock_floor:
                cur.execute(fl.lock_floor)
            cur.execute(db.st.get + fl.lock_row, {"key": key})
            values = cur.fetchone()
            row = None if values is None else _reader(cur)(values)
            outcome = _decide(row, allowance)
            if outcome == "deleted" and row is not None:
                params = _params(key, row, "")
                cur.execute(fl.raise_floor, {"at_least": params["at_least"]})
                cur.execute(fl.delete, {"key": key})
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return outcome, row

    return await db._run(run)
