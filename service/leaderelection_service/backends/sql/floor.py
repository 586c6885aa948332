"""The SQL backends' token floor: its table, PostgreSQL's floor function, the delete statements.

Example::

    fl = FloorSql.of("postgresql", names, preparer)
    fl.first            # "(\\"public\\".\\"leaderelection_leases_floor_at\\"(%(key)s) + 1)"
    add_floor(engine, names)   # schema version 3: what ``migrate`` adds, idempotently

The rule is ``token_floor.py``'s: delete raises the floor to at least the
deleted row's token and revision + 1, and a key's first row (the acquire's
INSERT) takes ``floor + 1`` as its token and revision. Here the floor is one
row of ``<table>_floor`` (``id = 1``). Delete runs in one transaction
(``deletion.py``): lock, read the row, refuse a held lease, raise the floor,
delete the row, commit; the floor raise and the delete commit together.

What must not happen is an acquire that INSERTs a deleted key's first row
with a floor read before the delete committed. Per dialect:

- **PostgreSQL** (READ COMMITTED). A plain subquery in the INSERT is not
  enough: the statement's snapshot is taken when it starts, so an acquire that
  started before the delete committed waits on the row being deleted and then
  INSERTs with the floor of its old snapshot. So the INSERT takes the floor
  from ``<table>_floor_at(key)``, a VOLATILE plpgsql function that first takes
  ``pg_advisory_xact_lock_shared`` on the key's hash and then selects the
  floor: a volatile function's query takes a fresh snapshot. Delete takes the
  same lock exclusively before anything else and holds it to its commit. So
  either the acquire took its lock first (the delete then waits for the
  acquire's commit and finds the lease held, or the row as that acquire left
  it), or the delete did (the acquire waits for its commit and then reads the
  raised floor). ``tests/test_sql_floor.py`` forces both interleavings.
  Rejected: ``SELECT … FOR SHARE`` of the floor row in every acquire, which
  also works but makes every acquire write a MultiXact.
- **MariaDB** (InnoDB). The INSERT reads the floor with ``LOCK IN SHARE
  MODE``, a locking read of the latest committed row, and holds that shared
  lock until it commits; delete locks the floor row ``FOR UPDATE`` first,
  before the lease row, so the two always lock in the same order (no
  deadlock) and an acquire either reads the raised floor or commits before
  the delete reads the lease row. (At REPEATABLE READ InnoDB takes that
  shared lock for a subquery of an INSERT anyway; the clause keeps it under
  READ COMMITTED.)
- **SQLite**: one writer at a time, and a write transaction whose read
  snapshot is older than the last commit cannot write (``SQLITE_BUSY``); the
  delete runs ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, Table, inspect, select

if TYPE_CHECKING:  # schema.py imports this module to migrate
    from leaderelection_service.backends.sql.schema import TableNames

FLOOR_ROW = 1


def floor_table(names: TableNames) -> Table:
    return Table(
        f"{names.table}_floor",
        MetaData(schema=names.schema),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("floor", BigInteger, nullable=False),
        mysql_engine="InnoDB",
    )


def lock_tag(names: TableNames) -> str:
    """What the advisory lock's hash is taken of, before the key (per table)."""
    return f"{names.channel}:"


@dataclass(frozen=True, slots=True)
class FloorSql:
    dialect: str
    first: str
    """The SQL expression of a key's first token and revision (``%(key)s`` bound)."""
    first_batch: str
    """The same in PostgreSQL's batch acquire, over its column ``k``."""
    lock: str
    """Run first in a delete's transaction (PostgreSQL: the key's advisory lock)."""
    lock_floor: str
    """Lock the floor row (MariaDB: before the lease row)."""
    lock_row: str
    """The lease row, locked, with ``now_us``."""
    raise_floor: str
    delete: str
    notify: str
    begin: str

    @classmethod
    def of(cls, dialect: str, names: TableNames, preparer: Any, table: str) -> FloorSql:
        fl = preparer.format_table(floor_table(names))
        greatest = "MAX" if dialect == "sqlite" else "GREATEST"
        raise_floor = f"UPDATE {fl} SET floor = {greatest}(floor, %(at_least)s) WHERE id = 1"
        delete = f"DELETE FROM {table} WHERE lease_key = %(key)s"
        if dialect == "postgresql":
            fn = function_name(names, preparer)
            return cls(
                dialect,
                first=f"({fn}(%(key)s::varchar) + 1)",  # the type lease_key binds as
                first_batch=f"({fn}(k) + 1)",
                lock="SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))",
                lock_floor="",
                lock_row=" FOR UPDATE",
                raise_floor=raise_floor,
                delete=delete,
                notify=f"SELECT pg_notify('{names.channel}', %(key)s)",
                begin="",
            )
        if dialect == "sqlite":
            first = f"((SELECT COALESCE(MAX(floor), 0) FROM {fl}) + 1)"
            return cls(
                dialect,
                first=first,
                first_batch="",
                lock="",
                lock_floor="",
                lock_row="",
                raise_floor=raise_floor.replace("%(at_least)s", ":at_least"),
                delete=delete.replace("%(key)s", ":key"),
                notify="",
                begin="BEGIN IMMEDIATE",
            )
        first = f"((SELECT COALESCE(MAX(floor), 0) FROM {fl} WHERE id = 1 LOCK IN SHARE MODE) + 1)"
        return cls(
            dialect,
            first=first,
            first_batch="",
            lock="",
            lock_floor=f"SELECT floor FROM {fl} WHERE id = 1 FOR UPDATE",
            lock_row=" FOR UPDATE",
            raise_floor=raise_floor,
            delete=delete,
            notify="",
            begin="BEGIN",
        )


def function_name(names: TableNames, preparer: Any) -> str:
    name = preparer.quote(f"{names.table}_floor_at")
    return f"{preparer.quote(names.schema)}.{name}" if names.schema else name


def add_floor(engine: Engine, names: TableNames) -> None:
    """Schema version 3, idempotent: the floor table and its row; on PostgreSQL the
    floor function (``CREATE OR REPLACE``). Several processes may run it at once."""
    table = floor_table(names)
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        have = inspect(conn).has_table(table.name, schema=names.schema)
        if not have:
            table.create(conn, checkfirst=True)
        if conn.execute(select(table.c.id).where(table.c.id == FLOOR_ROW)).first() is None:
            conn.execute(table.insert().values(id=FLOOR_ROW, floor=0))
        if engine.dialect.name == "postgresql":
            fl = preparer.format_table(table)
            tag = lock_tag(names).replace("'", "''")
            conn.exec_driver_sql(
                f"""CREATE OR REPLACE FUNCTION {function_name(names, preparer)}(k text)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $floor$
BEGIN
  -- Waits for a delete of this key to commit; then the SELECT takes a fresh
  -- snapshot (a volatile function's query does) and sees the raised floor.
  PERFORM pg_advisory_xact_lock_shared(hashtextextended('{tag}' || k, 0));
  RETURN (SELECT COALESCE(MAX(floor), 0) FROM {fl} WHERE id = {FLOOR_ROW});
END
$floor$"""
            )
