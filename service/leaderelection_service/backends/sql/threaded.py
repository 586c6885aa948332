"""SQLite and MariaDB: the lease statements through SQLAlchemy's sync pool, in worker threads.

Example::

    db = ThreadedSql(engine, statements, schema, threads=20, allow_us=0)
    granted, row = await db.acquire("cron", "host-a", 10_000_000)
    await db.close()

The same surface as ``postgresql.PgSql``, which ``SqlLeases`` answers from. The
statements run on the pooled driver connection in autocommit (one round trip
each, committed before we answer: durability, I3), in a bounded pool of worker threads
since neither driver has an event-loop interface. MariaDB has no
``UPDATE … RETURNING``: its renew and release are an UPDATE and a read in one
short transaction (``Statements.two_step``); SQLite returns no row for a
refused acquire, so a read follows on the same connection.

A connection error answers ``BackendUnavailable`` (503, Retry-After). The
pool is then discarded, so the first call after the database returns gets a
fresh connection; a call that failed on a dead pooled connection is retried
once at once (each operation is idempotent for its holder, so a retry after a
lost answer cannot grant twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from leaderelection_service.backends.sql.engine import first_line
from leaderelection_service.backends.sql.rows import LeaseRow, row_reader
from leaderelection_service.backends.sql.schema import SchemaGate, SchemaMissing
from leaderelection_service.backends.sql.statements import Statements
from leaderelection_service.lease_errors import BackendUnavailable

T = TypeVar("T")


class ThreadedSql:
    def __init__(
        self, engine: Engine, st: Statements, schema: SchemaGate, *, threads: int, allow_us: int
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.st = st
        self._schema = schema
        self._allow_us = allow_us
        self._dbapi = engine.dialect.loaded_dbapi
        self._threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    # -- running statements ----------------------------------------------------

    def _call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(cursor)`` on a pooled connection; connection trouble -> 503."""
        for attempt in (1, 2):
            try:
                self._schema.ensure()
                conn = self.engine.raw_connection()
            except SchemaMissing as err:
                raise BackendUnavailable(str(err), retry_after=5) from err
            except (exc.DBAPIError, exc.TimeoutError, self._dbapi.Error) as err:
                # connecting (raw_connection raises the driver's own errors), or migrating
                raise BackendUnavailable(f"{self.dialect} unreachable: {first_line(err)}") from err
            try:
                cur = conn.cursor()
                try:
                    return fn(cur)
                finally:
                    cur.close()
            except (self._dbapi.OperationalError, self._dbapi.InterfaceError) as err:
                disconnected = self.engine.dialect.is_disconnect(err, conn.dbapi_connection, None)
                if disconnected or self.dialect != "sqlite":
                    conn.invalidate(err)
                    self.engine.dispose()  # every pooled connection is suspect now
                if disconnected and attempt == 1:
                    continue
                raise BackendUnavailable(f"{self.dialect} unavailable: {first_line(err)}") from err
            except self._dbapi.ProgrammingError as err:
                self._schema.invalidate()  # a dropped table: say so on the next call
                raise BackendUnavailable(f"{self.dialect} refused: {first_line(err)}") from err
            finally:
                conn.close()  # back to the pool (a no-op after invalidate)
        raise AssertionError("unreachable")

    async def _run(self, fn: Callable[[Any], T]) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        return await anyio.to_thread.run_sync(self._call, fn, limiter=self._limiter)

    def _query(self, cur: Any, sql: str, params: Mapping[str, Any]) -> LeaseRow | None:
        cur.execute(sql, params)
        values = cur.fetchone()
        return None if values is None else _reader(cur)(values)

    def _get(self, cur: Any, key: str) -> LeaseRow | None:
        if self.st.two_step:
            cur.execute(self.st.now)
        return self._query(cur, self.st.get, {"key": key})

    # -- operations ------------------------------------------------------------

    async def acquire(
        self, key: str, holder: str, ttl_us: int, value: str | None = None
    ) -> tuple[bool, LeaseRow | None]:
        """(granted, the row after); no row when it changed under a refusal (try again)."""
        params = {
            "key": key,
            "holder": holder,
            "ttl_us": ttl_us,
            "allow_us": self._allow_us,
            "value": value,
        }

        def run(cur: Any) -> tuple[bool, LeaseRow | None]:
            row = self._query(cur, self.st.acquire, params)
            if row is None:  # sqlite: refused, no RETURNING row
                return False, self._get(cur, key)
            # mariadb: the row after, granted if it is ours (a refusal of the
            # holder's own term names a successor; a grant never does)
            return row.holder == holder and row.successor is None, row

        return await self._run(run)

    async def renew(
        self,
        key: str,
        holder: str,
        token: int,
        ttl_us: int | None,
        value: str | None = None,
        announced: bool | None = None,
    ) -> tuple[bool, LeaseRow | None]:
        params = {
            "key": key,
            "holder": holder,
            "token": token,
            "ttl_us": ttl_us,
            "value": value,
            "announced": announced,
        }
        return await self._run(lambda cur: self._owner_write(cur, self.st.renew, params))

    async def release(self, key: str, holder: str, token: int) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "holder": holder, "token": token}
        return await self._run(lambda cur: self._owner_write(cur, self.st.release, params))

    async def revoke(self, key: str) -> tuple[bool, LeaseRow | None]:
        params = {"key": key}
        return await self._run(lambda cur: self._owner_write(cur, self.st.revoke, params))

    async def transfer(
        self, key: str, holder: str, token: int, to: str
    ) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "holder": holder, "token": token, "to": to}
        return await self._run(lambda cur: self._owner_write(cur, self.st.transfer, params))

    async def handover(self, key: str, to: str) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "to": to, "allow_us": self._allow_us}
        return await self._run(lambda cur: self._owner_write(cur, self.st.handover, params))

    def _owner_write(
        self, cur: Any, sql: str, params: dict[str, Any]
    ) -> tuple[bool, LeaseRow | None]:
        """Renew or release: (granted, the row after) in one statement, or a read if refused."""
        if not self.st.two_step:
            row = self._query(cur, sql, params)
            if row is not None:
                return True, row
            return False, self._get(cur, params["key"])
        # MariaDB: UPDATE … WHERE decides, the SELECT in the same transaction
        # returns the row as that UPDATE left it; COMMIT before answering.
        cur.execute("BEGIN")
        try:
            cur.execute(self.st.now)
            granted = cur.execute(sql, params) == 1
            row = self._query(cur, self.st.get, {"key": params["key"]})
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return granted, row

    async def get(self, key: str) -> LeaseRow | None:
        return await self._run(lambda cur: self._get(cur, key))

    async def scan(self, sql: str, params: Mapping[str, Any]) -> list[LeaseRow]:
        def run(cur: Any) -> list[LeaseRow]:
            cur.execute(sql, params)
            read = _reader(cur)
            return [read(values) for values in cur.fetchall()]

        return await self._run(run)

    async def clock_us(self) -> int:
        """The database clock, in microseconds (``semaphore_path``)."""

        def run(cur: Any) -> int:
            cur.execute(self.st.now)
            if self.st.two_step:  # MariaDB's ``now`` sets @now
                cur.execute("SELECT @now")
            return int(cur.fetchone()[0])

        return await self._run(run)

    async def scalar(self, sql: str, params: dict[str, Any]) -> int:
        """One integer (``semaphore_path``: a new key's first token above the floor)."""

        def run(cur: Any) -> int:
            cur.execute(sql, params)
            return int(cur.fetchone()[0])

        return await self._run(run)

    async def cas_write(self, sql: str, params: dict[str, Any]) -> bool:
        """One compare-and-set of ``semaphore_path``: whether it wrote the row."""

        def run(cur: Any) -> bool:
            cur.execute(sql, params)
            return bool(cur.rowcount == 1)

        return await self._run(run)

    async def ping(self) -> None:
        await self._run(lambda cur: cur.execute(self.st.now))

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.engine.dispose)


def _reader(cur: Any) -> Callable[[Sequence[Any]], LeaseRow]:
    """Lease rows by the DB-API cursor's column names (``description``)."""
    return row_reader(tuple(column[0] for column in cur.description))
