"""Semaphore keys on SQL: read the row with the database clock, decide, compare-and-set on revision.

Example::

    path = SemaphorePath(db, "postgresql", table, channel, allowance=0.0)
    view = await path.change("jobs", lambda cur, now: semaphore_rules.decide_acquire(
        cur, key="jobs", holder="a", ttl=10.0, now=now, limit=3))

A plain lease is decided inside one statement on the database clock
(``statements/``). A semaphore key's rules (count the slots held, pick a
place, the next token across slots) do not fit one portable statement in
three dialects, so they are decided once, by ``semaphore_rules``, as the
compare-and-set stores decide them: ``SELECT`` the row together with the
database clock, decide on that clock, then ``UPDATE … WHERE revision =
:expected`` (``INSERT`` for a new key, doing nothing if one appeared); a
write that finds another revision reads and decides again. Every write of
either path bumps ``revision``, so neither can overwrite the other unseen.

Deciding with the clock read by the ``SELECT``, slightly before the write
commits, is safe: time only moves on, so a slot seen lapsed at that instant
is lapsed at the write too (never a grant of a place still held), a slot
seen held may have lapsed meanwhile (a grant refused a few milliseconds
early: the conservative side), and a grant's expiry counted from that
earlier instant ends the slot a little sooner than its holder reckons.

Rejected: a stored procedure per dialect (three more copies of the rules to
keep equal), and ``SELECT … FOR UPDATE`` in a transaction (a lock held
across a round trip, and SQLite has none).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from leaderelection_service.backends.sql.rows import LeaseRow, from_us, to_record
from leaderelection_service.backends.sql.slot_rows import row_params
from leaderelection_service.contention import KeyLocks, backoff
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.records import LeaseRecord, LeaseView
from leaderelection_service.token_floor import SETTLE_ATTEMPTS, numbered

Decide = Callable[[LeaseRecord | None, datetime], LeaseRecord | None]
WRITTEN = (
    "holder",
    "fencing_token",
    "ttl_us",
    "acquired_us",
    "renewed_us",
    "expires_us",
    "transitions",
    "released",
    "revision",
    "past",
    "lease_value",
    "announced",
    "revoked",
    "successor",
    "lease_limit",
    "slots",
)
JSON_COLUMNS = ("past", "slots")


class Db(Protocol):
    async def get(self, key: str) -> LeaseRow | None: ...
    async def clock_us(self) -> int: ...
    async def cas_write(self, sql: str, params: dict[str, Any]) -> bool: ...
    async def scalar(self, sql: str, params: dict[str, Any]) -> int: ...


def cas_statements(dialect: str, table: str, channel: str) -> tuple[str, str]:
    """(insert, update): a new key's row unless one exists; a row at revision ``expected``."""
    pg = dialect == "postgresql"

    def value(column: str) -> str:
        return f"CAST(%({column})s AS jsonb)" if pg and column in JSON_COLUMNS else f"%({column})s"

    columns = ", ".join(("lease_key", *WRITTEN))
    values = ", ".join(("%(key)s", *(value(c) for c in WRITTEN)))
    sets = ",\n  ".join(f"{c} = {value(c)}" for c in WRITTEN)
    if dialect in ("mysql", "mariadb"):
        insert = f"INSERT IGNORE INTO {table} ({columns}) VALUES ({values})"
    else:
        insert = (
            f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (lease_key) DO NOTHING"
        )
    update = f"UPDATE {table} SET\n  {sets}\nWHERE lease_key = %(key)s AND revision = %(expected)s"
    if pg:  # a row back means written; listeners told at commit, as by the statements
        tail = f" RETURNING pg_notify('{channel}', lease_key) IS NULL AS notified"
        insert, update = insert + tail, update + tail
    if dialect == "sqlite":
        insert, update = (re.sub(r"%\((\w+)\)s", r":\1", s) for s in (insert, update))
    return insert, update


class SemaphorePath:
    """The semaphore rules over one SQL table: read, decide, compare-and-set on revision."""

    def __init__(
        self,
        db: Db,
        dialect: str,
        table: str,
        channel: str,
        *,
        first: str = "1",
        allowance: float,
        max_attempts: int = 16,
    ) -> None:
        self.db = db
        self.insert, self.update = cas_statements(dialect, table, channel)
        self._first = f"SELECT {first}"  # floor.FloorSql.first: the floor + 1
        self._allowance = allowance
        self._max_attempts = max_attempts
        self._keys = KeyLocks()

    async def change(self, key: str, decide: Decide) -> LeaseView:
        """``decide(current, now)``: the record to write; None or the same revision: nothing."""
        async with self._keys.hold(key):
            return await self._change(key, decide)

    async def _change(self, key: str, decide: Decide) -> LeaseView:
        for attempt in range(self._max_attempts):
            if attempt > 1:
                await asyncio.sleep(backoff(attempt))
            row = await self.db.get(key)
            now = from_us(row.now_us if row is not None else await self.db.clock_us())
            cur = to_record(row) if row is not None else None
            new = decide(cur, now)
            if new is None:
                assert cur is not None
                return LeaseView(cur, now, self._allowance)
            if cur is not None and new.revision == cur.revision:
                return LeaseView(new, now, self._allowance)
            if cur is None:  # a key's first record starts above the token floor
                new = numbered(new, await self._floor(key))
                if await self.db.cas_write(self.insert, row_params(new)):
                    return LeaseView(await self._settled(key, new), now, self._allowance)
                continue
            params = {**row_params(new), "expected": cur.revision}
            if await self.db.cas_write(self.update, params):
                return LeaseView(new, now, self._allowance)
        raise BackendUnavailable(
            f"lease {key!r} is contended; retry",
            retry_after=1.0,
            kind="the lease is contended by concurrent writes; retry",
        )

    async def _floor(self, key: str) -> int:
        return await self.db.scalar(self._first, {"key": key}) - 1

    async def _settled(self, key: str, record: LeaseRecord) -> LeaseRecord:
        """The created first record, renumbered if a delete raised the floor past it
        between the floor read and the insert (as ``token_floor.settled``): that
        delete committed before the insert found no row, so this later read sees
        its floor."""
        for _ in range(SETTLE_ATTEMPTS):
            floor = await self._floor(key)
            if floor < record.fencing_token:
                return record
            fixed = numbered(record, floor)
            params = {**row_params(fixed), "expected": record.revision}
            if await self.db.cas_write(self.update, params):
                record = fixed
                continue
            row = await self.db.get(key)
            if row is None or len(to_record(row).history) != 1:
                break
            record = to_record(row)
        raise BackendUnavailable(
            f"lease {key!r} was deleted and created again while it was acquired; retry",
            retry_after=1.0,
            kind="the lease is contended by concurrent writes; retry",
        )
