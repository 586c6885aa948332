"""PostgreSQL: the lease statements on psycopg's async connections, in the event loop.

Example::

    conninfo = libpq_conninfo(engine_url("postgresql://u@db1:5432,db2:5432/leases"))
    # "user=u dbname=leases host=db1,db2 port=5432,5432"
    db = PgSql(conninfo, statements, schema, pool_size=10, allow_us=0)
    granted, row = await db.acquire("cron", "host-a", 10_000_000)
    await db.close()

``SqlLeases`` answers from the rows this returns (``backend.py``); SQLite and
MariaDB run the same statements through SQLAlchemy in worker threads
(``threaded.py``). Here:

1. No thread hop. Each statement is sent on a psycopg ``AsyncConnection``
   from the running event loop: autocommit (one round trip, committed before
   we answer: durability, I3), prepared on first use, ``past`` read as text (parsed only
   when the history is asked for). Handing every call to a worker thread and
   back cost about a third of the service's CPU.
2. ``PgPool`` keeps at most ``pool_size`` connections, made on demand. It is
   not ``psycopg_pool.AsyncConnectionPool`` (measured as fast, see
   ``bench/sql_engines.py``) because of what happens around an outage: that
   pool reconnects in the background with a backoff that doubles from 1 s and
   makes callers wait for it, so answers come back seconds after PostgreSQL
   does; here the next call after PostgreSQL returns connects at once, a
   refused connection answers 503 at once, and a dropped connection discards
   every idle one (they all lost the same server).
3. Acquires and renewals that arrive together share one statement and one
   commit (``backends/batching.py``, ``Statements.acquire_batch`` /
   ``renew_batch``: ``UPDATE … FROM unnest(…)``, ``INSERT … SELECT FROM
   unnest(…) ON CONFLICT …``, the same rules and the same database clock as
   the single statement), each caller getting the answer of its own key. A
   key is in one batch at a time: an ``ON CONFLICT`` may not touch a row
   twice, and the loser of a race for a key is answered with the winner's
   record. A renewal the batch refused is decided again by the single
   statement, which reads why.
4. Failures: connection trouble answers ``BackendUnavailable`` (503,
   Retry-After); a call whose pooled connection turned out dead is retried
   once on a fresh one (each operation is idempotent for its holder, so a
   retry after a lost answer cannot grant twice). A missing table is a 503
   too, and the schema is checked again on the next call. A cancelled caller
   (its client went away) never leaves a half-read connection in the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio.to_thread
import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import RowFactory, RowMaker, tuple_row
from psycopg.types.string import TextLoader
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from leaderelection_service.backends.batching import Batcher
from leaderelection_service.backends.sql.engine import first_line
from leaderelection_service.backends.sql.replication import QUERY, replication_warning
from leaderelection_service.backends.sql.rows import LeaseRow, row_reader
from leaderelection_service.backends.sql.schema import SchemaGate, SchemaMissing
from leaderelection_service.backends.sql.statements import Statements
from leaderelection_service.lease_errors import BackendUnavailable

# ``past`` (jsonb) arrives as its JSON text: most answers never look at it.
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_loader("jsonb", TextLoader)

Conn = psycopg.AsyncConnection[Any]
R = TypeVar("R")
AcquireItem = tuple[str, str, int, str | None]
"""key, holder, ttl_us, value"""
RenewItem = tuple[str, str, int, int | None, str | None, bool | None]
"""key, holder, token, ttl_us, value, announced (both None: the value unchanged)"""


def _renew_params(item: RenewItem) -> dict[str, Any]:
    key, holder, token, ttl_us, value, announced = item
    return {
        "key": key,
        "holder": holder,
        "token": token,
        "ttl_us": ttl_us,
        "value": value,
        "announced": announced,
    }


_MAX_BATCH = 256


def _lease_key(item: tuple[Any, ...]) -> str:
    key: str = item[0]
    return key


def lease_rows(cursor: Any) -> RowMaker[LeaseRow]:
    """psycopg's row factory for lease statements: rows by the cursor's column names."""
    names = tuple(column.name for column in cursor.description or ())
    return row_reader(names) if names else tuple  # a result without rows: none to read


def libpq_conninfo(u: URL) -> str:
    """The libpq connection string of a PostgreSQL ``engine_url`` (hosts listed as libpq wants).

    Query parameters (``target_session_attrs``, ``sslmode``, ``options``, …)
    pass through; the last of a repeated one counts, as in libpq.
    """
    params: dict[str, str] = {}
    if u.username:
        params["user"] = u.username
    if u.password:
        params["password"] = str(u.password)
    if u.database:
        params["dbname"] = u.database
    if u.host:
        params["host"] = u.host
    if u.port:
        params["port"] = str(u.port)
    for name, value in u.query.items():
        if name == "host" and not isinstance(value, str):
            names, ports = zip(*(_host_port(h) for h in value), strict=True)
            params["host"] = ",".join(names)
            if any(ports):
                params["port"] = ",".join(ports)
        elif name == "host" and ":" in value and not value.startswith("/"):
            params["host"], params["port"] = _host_port(value)
        else:
            params[name] = value if isinstance(value, str) else value[-1]
    return make_conninfo("", **params)


def _host_port(item: str) -> tuple[str, str]:
    """``h:5432`` -> (``h``, ``5432``); ``h`` -> (``h``, ``""``); a socket directory as is."""
    if item.startswith("/") or ":" not in item:
        return item, ""
    host, _, port = item.rpartition(":")
    return host, port


def with_index_plans(conninfo: str) -> str:
    """``conninfo`` whose sessions plan with the primary key even on a tiny table.

    Statements are prepared, and PostgreSQL keeps a generic plan for them;
    one made while the table held a few rows scans it whole, and stays until
    the next ANALYZE: measured, a batch renew on 10,000 rows took 10.4 ms with
    that plan against 0.4 ms by the index. Every lease statement looks up or
    ranges over the primary key, so ``enable_seqscan=off`` (a cost penalty,
    not a ban) makes the index plan the choice at any size.
    """
    options = conninfo_to_dict(conninfo).get("options") or ""
    return make_conninfo(conninfo, options=f"{options} -c enable_seqscan=off".strip())


class RolledBack(BackendUnavailable):
    """PostgreSQL rolled the statement back (SQLSTATE class 40: a deadlock, a
    serialization failure). Nothing was written; the caller may send it again."""


class PgPool:
    """At most ``size`` autocommit connections to ``conninfo``, made on demand."""

    def __init__(
        self, conninfo: str, size: int, *, timeout: float = 5.0, connect_timeout: int = 3
    ) -> None:
        self._conninfo = with_index_plans(conninfo)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Conn] = []
        self._epoch = 0  # bumped when the server was lost: older connections are not reused
        self._closed = False
        self.connects = 0
        """Connections made so far (for tests)."""

    async def take(self) -> tuple[Conn, int]:
        """A connection and its epoch, to hand back to ``give``; 503 when none can be had."""
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise BackendUnavailable(
                    f"postgresql: no free connection within {self._timeout:g} s"
                ) from None
        else:
            await self._slots.acquire()
        try:
            if self._closed:
                raise BackendUnavailable("postgresql: the backend is closed")
            if self._idle:
                return self._idle.pop(), self._epoch
            epoch = self._epoch
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    prepare_threshold=0,
                    connect_timeout=self._connect_timeout,
                    context=_ADAPTERS,
                )
            except psycopg.Error as err:
                raise BackendUnavailable(f"postgresql unreachable: {first_line(err)}") from err
            self.connects += 1
            return conn, epoch
        except BaseException:
            self._slots.release()
            raise

    async def give(self, conn: Conn, epoch: int) -> None:
        """Back to the pool, unless it is broken, mid-statement or from before an outage."""
        try:
            if (
                epoch == self._epoch
                and not self._closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
            ):
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def discard_idle(self) -> None:
        """The server was lost: drop every idle connection, and in-use ones when returned."""
        self._epoch += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        self._closed = True
        await self.discard_idle()


class PgSql:
    """The lease statements on PostgreSQL: each answers ``(granted, row)`` or rows."""

    def __init__(
        self,
        conninfo: str,
        st: Statements,
        schema: SchemaGate,
        *,
        pool_size: int,
        allow_us: int,
        batch: bool = True,
    ) -> None:
        self.st = st
        self.pool = PgPool(conninfo, pool_size)
        self._schema = schema
        self._allow_us = allow_us
        self.statements = 0
        """Statements sent (for tests and benchmarks)."""
        self.warning: str | None = None
        """Why acknowledged writes could be lost on failover, as of the last ping."""
        # Two batches of each kind in flight keep the connection busy while
        # the next one gathers; the pool is shared with the single statements.
        in_flight = max(1, pool_size // 4)
        self.acquires: Batcher[AcquireItem, LeaseRow | None] | None = None
        self.renewals: Batcher[RenewItem, LeaseRow | None] | None = None
        if batch and st.acquire_batch and st.renew_batch:
            self.acquires = Batcher(
                self._acquire_batch, key=_lease_key, max_batch=_MAX_BATCH, max_in_flight=in_flight
            )
            self.renewals = Batcher(
                self._renew_batch, key=_lease_key, max_batch=_MAX_BATCH, max_in_flight=in_flight
            )

    # -- running statements ----------------------------------------------------

    async def fetch(self, sql: str, params: Mapping[str, Any]) -> list[LeaseRow]:
        """The lease rows of one statement; connection trouble -> ``BackendUnavailable``."""
        return await self.execute(sql, params, lease_rows)

    async def execute(
        self, sql: str, params: Mapping[str, Any], row_factory: RowFactory[R]
    ) -> list[R]:
        """The rows of one statement, as ``row_factory`` makes them."""
        if not self._schema.ok:
            await self._ensure_schema()
        for attempt in (1, 2):
            conn, epoch = await self.pool.take()
            self.statements += 1
            try:
                cur = conn.cursor(row_factory=row_factory)
                await cur.execute(sql, params)
                return await cur.fetchall()
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                if (err.sqlstate or "").startswith("40"):
                    raise RolledBack(f"postgresql: {first_line(err)}") from err
                lost = conn.broken or conn.closed
                await self.pool.discard_idle()  # every pooled connection is suspect now
                if lost and attempt == 1:
                    continue
                raise BackendUnavailable(f"postgresql unavailable: {first_line(err)}") from err
            except psycopg.ProgrammingError as err:
                self._schema.invalidate()  # a dropped table: say so on the next call
                raise BackendUnavailable(f"postgresql refused: {first_line(err)}") from err
            finally:
                await self.pool.give(conn, epoch)
        raise AssertionError("unreachable")

    async def in_transaction(self, fn: Callable[[Conn], Awaitable[R]]) -> R:
        """``fn(conn)`` on a pooled connection (``fn`` opens its transaction; ``deletion.py``)."""
        if not self._schema.ok:
            await self._ensure_schema()
        conn, epoch = await self.pool.take()
        self.statements += 1
        try:
            return await fn(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as err:
            await self.pool.discard_idle()
            raise BackendUnavailable(f"postgresql unavailable: {first_line(err)}") from err
        except psycopg.ProgrammingError as err:
            self._schema.invalidate()
            raise BackendUnavailable(f"postgresql refused: {first_line(err)}") from err
        finally:
            await self.pool.give(conn, epoch)

    async def _ensure_schema(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._schema.ensure)
        except SchemaMissing as err:
            raise BackendUnavailable(str(err), retry_after=5) from err
        except (sa_exc.DBAPIError, sa_exc.TimeoutError, psycopg.Error) as err:
            raise BackendUnavailable(f"postgresql unreachable: {first_line(err)}") from err

    # -- operations ------------------------------------------------------------

    async def acquire(
        self, key: str, holder: str, ttl_us: int, value: str | None = None
    ) -> tuple[bool, LeaseRow | None]:
        """(granted, the row after); no row when it changed under a refusal (try again)."""
        if self.acquires is not None:
            row = await self.acquires.submit((key, holder, ttl_us, value))
        else:
            row = await self._acquire_one(key, holder, ttl_us, value)
        return (bool(row.granted), row) if row is not None else (False, None)

    async def _acquire_one(
        self, key: str, holder: str, ttl_us: int, value: str | None
    ) -> LeaseRow | None:
        params = {
            "key": key,
            "holder": holder,
            "ttl_us": ttl_us,
            "allow_us": self._allow_us,
            "value": value,
        }
        rows = await self.fetch(self.st.acquire, params)
        return rows[0] if rows else None

    async def _acquire_batch(self, items: list[AcquireItem]) -> list[LeaseRow | None]:
        """Each item's row, in order; None where the statement did not answer for its key."""
        assert self.st.acquire_batch is not None
        params = {
            "keys": [i[0] for i in items],
            "holders": [i[1] for i in items],
            "ttls": [i[2] for i in items],
            "values": [i[3] for i in items],
            "allow_us": self._allow_us,
        }
        try:
            rows = await self.fetch(self.st.acquire_batch, params)
        except RolledBack:
            # Not expected (every batch locks in key order); never fail the
            # callers for it: each runs its single statement.
            return [await self._acquire_one(*item) for item in items]
        return _in_order(items, rows)

    async def renew(
        self,
        key: str,
        holder: str,
        token: int,
        ttl_us: int | None,
        value: str | None = None,
        announced: bool | None = None,
    ) -> tuple[bool, LeaseRow | None]:
        """(granted, the row after), or (False, the current row or None if unknown)."""
        item = (key, holder, token, ttl_us, value, announced)
        if self.renewals is not None:
            row = await self.renewals.submit(item)
            if row is not None:
                return True, row
            # Refused in the batch: the single statement decides again and reads why.
        return await self._owner_write(self.st.renew, _renew_params(item))

    async def _renew_batch(self, items: list[RenewItem]) -> list[LeaseRow | None]:
        """Each item's row, in order; None where the batch refused it."""
        assert self.st.renew_batch is not None
        if len(items) == 1:  # alone: the single statement, without the batch's key-order lock
            rows = await self.fetch(self.st.renew, _renew_params(items[0]))
            return [rows[0] if rows else None]
        params = {
            "keys": [i[0] for i in items],
            "holders": [i[1] for i in items],
            "tokens": [i[2] for i in items],
            "ttls": [i[3] for i in items],
            "values": [i[4] for i in items],
            "announced": [i[5] for i in items],
        }
        try:
            rows = await self.fetch(self.st.renew_batch, params)
        except RolledBack:
            return [None] * len(items)  # each caller runs its single statement
        return _in_order(items, rows)

    async def release(self, key: str, holder: str, token: int) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "holder": holder, "token": token}
        return await self._owner_write(self.st.release, params)

    async def revoke(self, key: str) -> tuple[bool, LeaseRow | None]:
        return await self._owner_write(self.st.revoke, {"key": key})

    async def transfer(
        self, key: str, holder: str, token: int, to: str
    ) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "holder": holder, "token": token, "to": to}
        return await self._owner_write(self.st.transfer, params)

    async def handover(self, key: str, to: str) -> tuple[bool, LeaseRow | None]:
        params = {"key": key, "to": to, "allow_us": self._allow_us}
        return await self._owner_write(self.st.handover, params)

    async def _owner_write(self, sql: str, params: dict[str, Any]) -> tuple[bool, LeaseRow | None]:
        rows = await self.fetch(sql, params)
        if rows:
            return True, rows[0]
        return False, await self.get(params["key"])

    async def get(self, key: str) -> LeaseRow | None:
        rows = await self.fetch(self.st.get, {"key": key})
        return rows[0] if rows else None

    async def scan(self, sql: str, params: Mapping[str, Any]) -> list[LeaseRow]:
        return await self.fetch(sql, params)

    async def clock_us(self) -> int:
        """The database clock, in microseconds (``semaphore_path``)."""
        rows = await self.execute(self.st.now, {}, tuple_row)
        return int(rows[0][0])

    async def scalar(self, sql: str, params: dict[str, Any]) -> int:
        """One integer (``semaphore_path``: a new key's first token above the floor)."""
        rows = await self.execute(sql, params, tuple_row)
        return int(rows[0][0])

    async def cas_write(self, sql: str, params: dict[str, Any]) -> bool:
        """One compare-and-set of ``semaphore_path`` (it returns a row when written)."""
        return bool(await self.execute(sql, params, tuple_row))

    async def ping(self) -> None:
        """The server answers; also reads whether it replicates synchronously (``warning``)."""
        rows = await self.execute(QUERY, {}, tuple_row)
        standbys, names, commit = rows[0]
        self.warning = replication_warning(int(standbys), str(names), str(commit))

    async def close(self) -> None:
        await self.pool.close()


def _in_order(items: list[Any], rows: list[LeaseRow]) -> list[LeaseRow | None]:
    """The batch's rows by item: each key's row, or None where it has none."""
    by_key = {row.lease_key: row for row in rows}
    return [by_key.get(item[0]) for item in items]
