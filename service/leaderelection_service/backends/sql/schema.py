"""The SQL backend's tables, their version, and the migration that creates them.

Example::

    names = TableNames.of(table="leaderelection_leases", schema=None)
    engine = create_engine("postgresql+psycopg://db/leases")
    migrate(engine, names)          # what ``leaderelection migrate`` runs
    check_version(engine, names)    # raises SchemaMissing unless migrated

Two tables, named by the operator (validated identifiers, never raw input):

- ``<table>``: one row per key. Times are integers, microseconds since the
  Unix epoch on the database's clock; ``past`` holds the key's closed terms
  as a JSON array (the current term is the row itself); ``lease_value`` and
  ``announced`` the holder's value, ``revoked`` an operator's revoke (version 2).
- ``<table>_meta``: ``schema_version`` and anything later migrations need.

``migrate`` is idempotent and safe to run from several processes at once.
Versions: 1 the lease and meta tables; 2 adds ``lease_value`` (nullable
text), ``announced`` and ``revoked`` (booleans, default false) to the lease table, which
``migrate`` adds in place to a version-1 table: its rows and tokens stay; 3
adds the token floor (``floor.py``: ``<table>_floor`` and, on PostgreSQL, the
function ``<table>_floor_at``), added in place by ``added_in_3``; 4 adds
``successor`` (nullable, the holder a lease is handed to), likewise in place;
5 adds the semaphore columns (``SEMAPHORE_COLUMNS``): ``lease_limit`` (integer,
default 1) and ``slots`` (nullable JSON; NULL: a plain lease), added in place
the same way (every existing row stays a plain lease).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    Unicode,
    UnicodeText,
    exc,
    false,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, postgresql

from leaderelection_service.sql_names import DEFAULT_TABLE, check_identifier

SCHEMA_VERSION = 5
"""Bump with every change of the tables; ``migrate`` brings older ones up to it."""


class SchemaMissing(Exception):
    """The tables are absent or older than this code; the message says what to run."""


@dataclass(frozen=True, slots=True)
class TableNames:
    table: str
    schema: str | None

    @classmethod
    def of(cls, table: str = DEFAULT_TABLE, schema: str | None = None) -> TableNames:
        check_identifier("table name", table)
        if schema:
            check_identifier("schema name", schema)
        return cls(table, schema or None)

    @property
    def channel(self) -> str:
        """The PostgreSQL NOTIFY channel of this table (a valid identifier, < 64 bytes)."""
        return f"{self.schema or 'public'}.{self.table}"


_KEY = String(128).with_variant(String(128, collation="C"), "postgresql")
_KEY = _KEY.with_variant(
    mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
# Holders compare byte for byte: MariaDB's default collations ignore case and
# trailing spaces, which would let "a" renew the lease of "A ".
_HOLDER = Unicode(256).with_variant(
    mysql.VARCHAR(256, charset="utf8mb4", collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)
# A value compares byte for byte too; TEXT holds its 4096 bytes on every dialect.
_VALUE = UnicodeText().with_variant(
    mysql.TEXT(charset="utf8mb4", collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


def tables(names: TableNames) -> tuple[Table, Table]:
    """The lease table and its meta table, as SQLAlchemy Core ``Table`` objects."""
    md = MetaData(schema=names.schema)
    mysql_opts = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
    leases = Table(
        names.table,
        md,
        Column("lease_key", _KEY, primary_key=True),
        Column("holder", _HOLDER, nullable=False),
        Column("fencing_token", BigInteger, nullable=False),
        Column("ttl_us", BigInteger, nullable=False),
        Column("acquired_us", BigInteger, nullable=False),
        Column("renewed_us", BigInteger, nullable=False),
        Column("expires_us", BigInteger, nullable=False),
        Column("transitions", BigInteger, nullable=False),
        Column("released", Boolean, nullable=False),
        Column("revision", BigInteger, nullable=False),
        Column("past", _JSON, nullable=False),
        Column("lease_value", _VALUE, nullable=True),
        Column("announced", Boolean, nullable=False, server_default=false()),
        Column("revoked", Boolean, nullable=False, server_default=false()),
        Column("successor", _HOLDER, nullable=True),
        Column("lease_limit", BigInteger, nullable=False, server_default=text("1")),
        Column("slots", _JSON, nullable=True),
        **mysql_opts,
    )
    meta = Table(
        f"{names.table}_meta",
        md,
        Column("name", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
        **mysql_opts,
    )
    return leases, meta


def installed_version(engine: Engine, names: TableNames) -> int | None:
    """The recorded schema version, or None when the tables do not exist."""
    _, meta = tables(names)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                select(meta.c.value).where(meta.c.name == "schema_version")
            ).scalar_one_or_none()
    except exc.ProgrammingError:
        return None  # no such table
    except exc.OperationalError as err:
        if "no such table" in str(err) or "doesn't exist" in str(err):
            return None
        raise
    return int(value) if value is not None else None


def migrate(engine: Engine, names: TableNames, attempts: int = 5) -> int:
    """Create or upgrade the tables to ``SCHEMA_VERSION``; returns the version found before (0).

    Several processes may migrate at once (replicas starting together): a
    CREATE or INSERT that loses that race fails, and the next attempt finds
    the winner's tables.
    """
    for attempt in range(attempts):
        try:
            return _migrate_once(engine, names)
        except (exc.ProgrammingError, exc.IntegrityError, exc.OperationalError, exc.InternalError):
            # a CREATE, INSERT or ALTER another process ran first
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _migrate_once(engine: Engine, names: TableNames) -> int:
    leases, meta = tables(names)
    before = installed_version(engine, names) or 0
    if before > SCHEMA_VERSION:
        raise SchemaMissing(
            f"schema version {before} is newer than this code's {SCHEMA_VERSION}; upgrade it"
        )
    if before == SCHEMA_VERSION:
        return before
    if before:
        _upgrade(engine, names)
        return before
    with engine.begin() as conn:
        if names.schema and engine.dialect.name == "postgresql":
            quoted = engine.dialect.identifier_preparer.quote(names.schema)
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        leases.metadata.create_all(conn, checkfirst=True)
    added_in_3(engine, names)  # before the version row: a version-3 table has its floor
    with engine.begin() as conn:
        conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
    return before


ADDED_IN_2 = ("lease_value", "announced", "revoked")
ADDED_FOR_TRANSFER = ("successor",)
"""Version 4: the holder a lease is handed to (rule "transfer"), nullable."""
NULLABLE = ("lease_value", "successor")
SEMAPHORE_COLUMNS = {"lease_limit": " NOT NULL DEFAULT 1", "slots": " NULL"}
"""Version 5 (semaphores): each column and the tail of its ``ADD COLUMN``."""


def added_in_3(engine: Engine, names: TableNames) -> None:
    """Version 3: the token floor (idempotent: adds what is missing)."""
    from leaderelection_service.backends.sql.floor import add_floor  # it imports this module

    add_floor(engine, names)


def _upgrade(engine: Engine, names: TableNames) -> None:
    """Older versions to this one: add the missing columns and the floor in place (rows
    and tokens kept)."""
    leases, meta = tables(names)
    dialect = engine.dialect
    quoted = dialect.identifier_preparer.format_table(leases)
    with engine.begin() as conn:
        have = {c["name"] for c in inspect(conn).get_columns(names.table, schema=names.schema)}
        for name in ADDED_IN_2 + ADDED_FOR_TRANSFER:
            if name in have:
                continue  # another process added it
            column = leases.c[name]
            sql_type = column.type.compile(dialect=dialect)
            default = " NOT NULL DEFAULT " + ("FALSE" if dialect.name == "postgresql" else "0")
            tail = " NULL" if name in NULLABLE else default
            conn.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {name} {sql_type}{tail}")
        for name, tail in SEMAPHORE_COLUMNS.items():
            if name not in have:
                sql_type = leases.c[name].type.compile(dialect=dialect)
                conn.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {name} {sql_type}{tail}")
    added_in_3(engine, names)
    with engine.begin() as conn:
        conn.execute(
            update(meta).where(meta.c.name == "schema_version").values(value=str(SCHEMA_VERSION))
        )


def check_version(engine: Engine, names: TableNames) -> None:
    found = installed_version(engine, names)
    if found == SCHEMA_VERSION:
        return
    where = f"{names.schema}.{names.table}" if names.schema else names.table
    if found is None:
        raise SchemaMissing(
            f"table {where} does not exist; run `leaderelection migrate --backend-url URL` "
            "or let the service create it (LEADERELECTION_SQL_CREATE_SCHEMA=true)"
        )
    raise SchemaMissing(
        f"table {where} has schema version {found}, this code needs {SCHEMA_VERSION}; "
        "run `leaderelection migrate --backend-url URL`"
    )


class SchemaGate:
    """The tables checked (and created, unless ``create`` is off) once before first use.

    ``ensure`` is blocking (SQLAlchemy, sync): run it in a worker thread from
    async code. After ``invalidate`` (a statement found no table) the next
    ``ensure`` checks again, so a dropped table is reported, or re-created.
    """

    def __init__(self, engine: Engine, names: TableNames, create: bool) -> None:
        self.engine = engine
        self.names = names
        self.create = create
        self.ok = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Raise ``SchemaMissing``, or the driver's error, unless the tables are ready."""
        if self.ok:
            return
        with self._lock:
            if self.ok:
                return
            if self.create:
                migrate(self.engine, self.names)
            check_version(self.engine, self.names)
            self.ok = True

    def invalidate(self) -> None:
        self.ok = False
