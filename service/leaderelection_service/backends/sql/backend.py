"""SQL backend: PostgreSQL (psycopg 3), SQLite and MariaDB through one code path.

Example::

    leases = SqlLeases("postgresql+psycopg://leases:secret@db:5432/leases")
    view = await leases.acquire("cron", "host-a", ttl=10.0)
    await leases.close()

URLs: ``postgresql://…`` (psycopg 3; ``postgresql+psycopg://`` and
``postgres://`` too), ``sqlite:///path/to/file.db``, ``mariadb+pymysql://…``
(``mysql://`` and ``mysql+pymysql://`` mean the same, but only MariaDB 10.5+
offers the ``RETURNING`` these statements need).

How it runs:

1. SQLAlchemy parses the URL and owns the schema (``schema.py``: created
   on first use unless ``create_schema`` is off, then ``leaderelection
   migrate`` must have run). The lease statements (``statements/``) are
   plain SQL, one per operation, each a compare-and-set on the database clock
   in autocommit: committed before we answer (durability, I3).
2. PostgreSQL (``postgresql.py``): the statements run on psycopg's async
   connections in the event loop, prepared, with no thread hop; acquires and
   renewals that arrive together share one statement and one commit
   (``backends/batching.py``). Measured (``bench/sql_engines.py``, ``bench/sql_batch.py``,
   docs/design.md): a statement through the sync pool and a worker thread
   cost 0.23 to 0.39 ms of CPU, through SQLAlchemy's async engine 0.33 to 0.65 ms,
   on psycopg's async connection in the loop 0.16 to 0.19 ms; batched, about
   0.05 ms per call.
3. SQLite and MariaDB (``threaded.py``): SQLAlchemy's sync pool and the
   driver cursor in a bounded pool of worker threads.
4. Connection trouble answers ``BackendUnavailable`` (503, Retry-After), and
   the next call after the database returns connects afresh: the service
   recovers on its own.
5. ``wait_for_change``: PostgreSQL ``LISTEN`` (``notify.py``) wakes the
   watch streams of every replica; elsewhere this process's own writes do.
6. A driver is imported when its URL is opened, never by importing this
   package: ``postgresql.py`` imports psycopg and is itself imported only for
   a PostgreSQL URL; SQLAlchemy imports pymysql or sqlite3 when the engine is
   made. A service on SQLite never loads psycopg (a test checks it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio.to_thread

from leaderelection_service import semaphore_rules
from leaderelection_service.backends.sql import semaphore_path
from leaderelection_service.backends.sql.deletion import pg_delete, threaded_delete
from leaderelection_service.backends.sql.engine import engine_url, make_engine
from leaderelection_service.backends.sql.floor import FloorSql, lock_tag
from leaderelection_service.backends.sql.notify import Changes, PgListener
from leaderelection_service.backends.sql.rows import (
    LeaseRow,
    prefix_upper,
    to_us,
    to_view,
)
from leaderelection_service.backends.sql.schema import (
    SCHEMA_VERSION,
    SchemaGate,
    TableNames,
    check_version,
    migrate,
    tables,
)
from leaderelection_service.backends.sql.semaphore_path import SemaphorePath
from leaderelection_service.backends.sql.statements import statements_for
from leaderelection_service.lease_errors import BackendUnavailable, LeaseHeld
from leaderelection_service.records import LeaseView, valid_key
from leaderelection_service.refusals import (
    acquire_refusal,
    held,
    lost,
    never_acquired,
    to_the_holder,
    transfer_refusal,
    transferred_already,
)
from leaderelection_service.sql_names import DEFAULT_TABLE
from leaderelection_service.storage import Capabilities

if TYPE_CHECKING:
    from leaderelection_service.backends.sql.postgresql import PgSql
    from leaderelection_service.backends.sql.threaded import ThreadedSql

log = logging.getLogger("leaderelection.sql")


class SqlLeases:
    """``storage.LeaseBackend`` over one SQL table; expiry by the database clock."""

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        create_schema: bool = True,
        clock_skew_allowance: float = 0.0,
        pool_size: int = 10,
        batch: bool = True,
    ) -> None:
        self.names = TableNames.of(table, schema)
        self.url = engine_url(url)
        pg = self.url.get_backend_name() == "postgresql"
        # PostgreSQL's statements run on psycopg's async connections; its
        # SQLAlchemy engine only creates and checks the tables (no pool kept).
        self.engine = make_engine(self.url, pool_size, pooled=not pg)
        self.dialect = self.engine.dialect.name
        self.description = self.url.render_as_string(hide_password=True)
        self.capabilities = Capabilities(
            shared_across_hosts=self.dialect != "sqlite",
            change_notification=self.dialect == "postgresql",
        )
        preparer = self.engine.dialect.identifier_preparer
        quoted = preparer.format_table(tables(self.names)[0])
        self.floor = FloorSql.of(self.dialect, self.names, preparer, quoted)
        st = statements_for(
            self.dialect, quoted, self.names.channel, self.floor.first, self.floor.first_batch
        )
        gate = SchemaGate(self.engine, self.names, create_schema)
        allow_us = to_us(clock_skew_allowance)
        self._allowance = clock_skew_allowance
        self._allow_us = allow_us
        self.db: PgSql | ThreadedSql
        # Each engine module imports its driver: only the one for this URL loads.
        if pg:
            from leaderelection_service.backends.sql.postgresql import PgSql

            self.db = PgSql(
                self._conninfo(), st, gate, pool_size=pool_size, allow_us=allow_us, batch=batch
            )
        else:
            from leaderelection_service.backends.sql.threaded import ThreadedSql

            self.db = ThreadedSql(self.engine, st, gate, threads=pool_size * 2, allow_us=allow_us)
        self.st = st
        self.semaphores = SemaphorePath(
            self.db,
            self.dialect,
            quoted,
            self.names.channel,
            first=self.floor.first,
            allowance=clock_skew_allowance,
        )
        self._changes: Changes | None = None
        self._listener: PgListener | None = None

    def _conninfo(self) -> str:
        """The URL as libpq takes it (``host=h1,h2 port=… options=…``)."""
        from leaderelection_service.backends.sql.postgresql import libpq_conninfo

        return libpq_conninfo(self.url)

    def _written(self, key: str) -> None:
        if self._changes is not None:
            self._changes.fire((key,))

    # -- LeaseBackend ------------------------------------------------------------

    async def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        value: str | None = None,
        limit: int = 1,
        may_change_limit: bool = False,
    ) -> LeaseView:
        _check_key(key)
        if limit != 1:
            return await self._semaphore_acquire(key, holder, ttl, value, limit, may_change_limit)
        ttl_us = to_us(ttl)
        for _ in range(3):
            granted, row = await self.db.acquire(key, holder, ttl_us, value)
            if row is not None and row.slots is not None:  # refused: a semaphore key
                return await self._semaphore_acquire(key, holder, ttl, value, 1, may_change_limit)
            if row is None:
                continue
            view = to_view(row, self._allowance)
            if granted:
                self._written(key)
                return view
            refusal = self._refusal(key, view, holder)
            if refusal is not None:
                raise refusal
        # Refused each time, with a row read as the statement began that shows it
        # free: terms keep beginning and ending under it (other holders' acquires,
        # releases, deletes). It was held when tried: lease_held, with the newest
        # row (the caller waits for the next change, as after any refusal).
        row = await self.db.get(key)
        if row is None:
            raise BackendUnavailable("the lease row changed under a refused acquire; try again")
        view = to_view(row, self._allowance)
        raise self._refusal(key, view, holder) or held(key, view)

    async def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None,
        value: str | None = None,
        announce: bool = False,
    ) -> LeaseView:
        _check_key(key)
        ttl_us = None if ttl is None else to_us(ttl)
        announced = None if value is None else announce  # NULL, NULL: the value unchanged
        granted, row = await self.db.renew(
            key, holder, _bound(fencing_token), ttl_us, value, announced
        )
        if not granted and row is not None and row.slots is not None:
            return await self._semaphore(
                key,
                lambda cur, now: semaphore_rules.decide_renew(
                    cur,
                    key=key,
                    holder=holder,
                    fencing_token=fencing_token,
                    ttl=ttl,
                    now=now,
                    allowance=self._allowance,
                    value=value,
                    announce=announce,
                ),
            )
        view = self._owner_view(key, row)
        if not granted:
            raise lost(key, view, holder, fencing_token)
        self._written(key)
        return view

    async def release(self, key: str, holder: str, fencing_token: int) -> LeaseView:
        _check_key(key)
        granted, row = await self.db.release(key, holder, _bound(fencing_token))
        if not granted and row is not None and row.slots is not None:
            return await self._semaphore(
                key,
                lambda cur, now: semaphore_rules.decide_release(
                    cur,
                    key=key,
                    holder=holder,
                    fencing_token=fencing_token,
                    now=now,
                    allowance=self._allowance,
                ),
            )
        view = self._owner_view(key, row)
        rec = view.record
        if granted:
            self._written(key)
        elif not (rec.holder == holder and rec.fencing_token == fencing_token and rec.released):
            # Releasing one's own released lease again succeeds and writes nothing.
            raise lost(key, view, holder, fencing_token)
        return view

    async def revoke(self, key: str) -> LeaseView:
        _check_key(key)
        granted, row = await self.db.revoke(key)
        if not granted and row is not None and row.slots is not None:
            return await self._semaphore(
                key, lambda cur, now: semaphore_rules.decide_revoke(cur, key=key, now=now)
            )
        view = self._owner_view(key, row)  # not granted: already released or revoked
        if granted:
            self._written(key)
        return view

    async def delete(self, key: str) -> LeaseView:
        """Rule "delete", in one transaction with the floor raise (``deletion.py``)."""
        _check_key(key)
        if self.dialect == "postgresql":
            lock = lock_tag(self.names) + key
            outcome, row = await pg_delete(self.db, self.floor, key, lock, self._allowance)  # type: ignore[arg-type]
        else:
            outcome, row = await threaded_delete(self.db, self.floor, key, self._allowance)  # type: ignore[arg-type]
        view = self._owner_view(key, row)  # absent: not_found
        if outcome == "held":
            raise held(key, view)
        self._written(key)
        return view

    async def transfer(
        self, key: str, to: str, holder: str | None = None, fencing_token: int | None = None
    ) -> LeaseView:
        _check_key(key)
        if holder is not None and to == holder:
            raise to_the_holder(key, to)  # the statement would not refuse it
        if holder is None:
            granted, row = await self.db.handover(key, to)
        else:
            granted, row = await self.db.transfer(key, holder, _bound(fencing_token or 0), to)
        view = self._owner_view(key, row)
        if granted:
            self._written(key)
            return view
        # Refused: the rules say why, on the row as the database answered it.
        refusal = transfer_refusal(key, view, to=to, holder=holder, fencing_token=fencing_token)
        if refusal is not None:
            raise refusal
        if not transferred_already(view.record, to=to, holder=holder):
            raise BackendUnavailable("the lease row changed under a refused transfer; try again")
        return view

    async def _semaphore_acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        value: str | None,
        limit: int,
        may_change_limit: bool,
    ) -> LeaseView:
        return await self._semaphore(
            key,
            lambda cur, now: semaphore_rules.decide_acquire(
                cur,
                key=key,
                holder=holder,
                ttl=round(ttl, 6),
                now=now,
                limit=limit,
                allowance=self._allowance,
                value=value,
                may_change_limit=may_change_limit,
            ),
        )

    async def _semaphore(self, key: str, decide: semaphore_path.Decide) -> LeaseView:
        """A semaphore key's operation: read, decide, compare-and-set (``semaphore_path``)."""
        view = await self.semaphores.change(key, decide)
        self._written(key)
        return view

    def _refusal(self, key: str, view: LeaseView, holder: str) -> LeaseHeld | None:
        """Why ``view`` explains a refused acquire (held by someone else, or reserved
        for a successor), or None when it does not.

        A refusal is decided on the newest row, but PostgreSQL reads the row it
        answers with as the statement began, so a write committed meanwhile
        (another replica's) can leave it showing a free lease; then ask again
        rather than answer ``lease_held`` with a record that says otherwise.
        """
        return acquire_refusal(key, view, holder)

    def _owner_view(self, key: str, row: LeaseRow | None) -> LeaseView:
        if row is None:
            raise never_acquired(key)
        return to_view(row, self._allowance)

    async def get(self, key: str) -> LeaseView:
        _check_key(key)
        row = await self.db.get(key)
        if row is None:
            raise never_acquired(key)
        return to_view(row, self._allowance)

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]:
        hi = prefix_upper(prefix)
        params = {"lo": prefix, "hi": hi, "after": after or "", "limit": limit}
        rows = await self.db.scan(self.st.scan if hi is None else self.st.scan_to, params)
        return [to_view(r, self._allowance) for r in rows]

    async def ping(self) -> None:
        await self.db.ping()

    @property
    def warning(self) -> str | None:
        """Why this backend, though ready, may not keep the contract (``readiness``)."""
        return getattr(self.db, "warning", None)

    async def wait_for_change(self, timeout: float) -> frozenset[str] | None:
        if self._changes is None:
            self._changes = Changes()
        if self.dialect == "postgresql" and self._listener is None:
            self._listener = PgListener(self._conninfo(), self.names.channel, self._changes)
            self._listener.start()
        return await self._changes.wait(timeout)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        await self.db.close()
        if self.dialect == "postgresql":
            await anyio.to_thread.run_sync(self.engine.dispose)


def migrate_url(url: str, *, table: str, schema: str | None) -> tuple[int, int]:
    """``leaderelection migrate``: (version before, version now) of the tables at ``url``."""
    names = TableNames.of(table, schema)
    engine = make_engine(url, pool_size=1)
    try:
        before = migrate(engine, names)
        check_version(engine, names)
    finally:
        engine.dispose()
    return before, SCHEMA_VERSION


def _bound(token: int) -> int:
    """``token`` as the statements bind it: one past a BIGINT's range (no term ever had
    it; SQLite's driver cannot even bind it) as 0, which no term has either."""
    return token if 0 < token <= BIGINT_MAX else 0


BIGINT_MAX = 2**63 - 1


def _check_key(key: str) -> None:
    if not valid_key(key):  # the HTTP layer checked already; never trust it here
        raise ValueError(f"invalid key {key!r}")
