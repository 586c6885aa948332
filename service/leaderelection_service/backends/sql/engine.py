"""The SQLAlchemy engine for a lease-table URL, and how a driver's error reads.

Example::

    engine = make_engine("sqlite:////var/lib/leases.db", pooled=True)
    engine_url("postgresql://db/leases").drivername   # 'postgresql+psycopg'

SQLAlchemy imports a driver when the engine is created, not when this module
is imported: opening ``sqlite://`` never loads psycopg or pymysql.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def engine_url(url: str) -> URL:
    """``url`` with the driver this project uses filled in (``postgresql`` → psycopg 3)."""
    u = make_url(url)
    name = _DRIVERS.get(u.drivername)
    if name:
        u = u.set(drivername=name)
    if u.drivername not in ("postgresql+psycopg", "sqlite", "mysql+pymysql", "mariadb+pymysql"):
        raise ValueError(
            f"unsupported SQL URL scheme {u.drivername!r}: use postgresql://, sqlite:///path "
            "or mariadb+pymysql://"
        )
    if u.drivername == "sqlite" and not u.database:
        raise ValueError("sqlite URL must name a file: sqlite:////var/lib/leases.db")
    return u


def make_engine(url: str | URL, pool_size: int = 10, *, pooled: bool = True) -> Engine:
    """A SQLAlchemy engine in autocommit; ``pooled=False`` keeps no connection between uses."""
    u = engine_url(str(url)) if isinstance(url, str) else url
    dialect = u.get_backend_name()
    connect_args: dict[str, Any] = {}
    if dialect == "postgresql":
        connect_args = {"connect_timeout": 3}
    elif dialect in ("mysql", "mariadb"):
        connect_args = {"connect_timeout": 3, "read_timeout": 10, "write_timeout": 10}
    elif dialect == "sqlite":
        connect_args = {"timeout": 10, "check_same_thread": False}
    pool: dict[str, Any] = (
        {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": 5}
        if pooled
        else {"poolclass": NullPool}
    )
    engine = create_engine(
        u,
        pool_reset_on_return=None,  # autocommit: nothing to roll back, save a round trip
        isolation_level="AUTOCOMMIT",
        connect_args=connect_args,
        **pool,
    )
    if dialect == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, record: Any) -> None:
            # WAL lets readers run beside the writer; FULL syncs every commit (durability, I3).
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=FULL")

    return engine


def first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
