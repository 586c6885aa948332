"""The SQLAlchemy engine for a lease-table URL, and how a driver's error reads.

Example::

    engine = make_engine("sqlite:////var/lib/leases.db", pooled=True)
    engine_url("postgresql://db/leases").drivername   # 'postgresql+psycopg'

A PostgreSQL URL may name several hosts the way libpq does
(``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``): the
service then connects to whichever of them is the writable primary, and after
a failover to the promoted standby. SQLAlchemy's ``make_url`` reads that
netloc as one host with port ``5432,h2:5432`` and fails, so ``engine_url``
rewrites it to SQLAlchemy's own multi-host form (``?host=h1:5432&host=h2:5432``),
which its psycopg dialect turns back into libpq's ``host=h1,h2 port=…``;
``postgresql.libpq_conninfo`` does the same for the connections this project
opens itself. Rejected: handing the URL string straight to psycopg and SQLAlchemy
separately (two parsers, and the SQLAlchemy one refuses it).

SQLAlchemy imports a driver when the engine is created, not when this module
is imported: opening ``sqlite://`` never loads psycopg or pymysql.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_NETLOC = re.compile(r"^(?P<scheme>[^:/]+)://(?P<user>[^@/?#]*@)?(?P<hosts>[^/?#]*)(?P<rest>.*)$")


def multi_host_to_query(url: str) -> str:
    """A libpq multi-host URL in SQLAlchemy's form; any other URL unchanged.

    ``postgresql://u@h1:1,h2:2/db?x=y`` -> ``postgresql://u@/db?host=h1:1&host=h2:2&x=y``.
    """
    m = _NETLOC.match(url)
    if m is None or m["scheme"].lower() not in _PG_SCHEMES or "," not in m["hosts"]:
        return url
    hosts = [h for h in m["hosts"].split(",") if h]
    if any(h.startswith("[") for h in hosts):
        raise ValueError(
            "an IPv6 address in a multi-host PostgreSQL URL is not supported: "
            "name the hosts (DNS or /etc/hosts) or use IPv4 addresses"
        )
    path, _, query = m["rest"].partition("?")
    listed = "&".join("host=" + quote(h, safe=":") for h in hosts)
    return f"{m['scheme']}://{m['user'] or ''}{path or '/'}?{listed}{'&' + query if query else ''}"


def engine_url(url: str) -> URL:
    """``url`` with the driver this project uses filled in (``postgresql`` → psycopg 3)."""
    u = make_url(multi_host_to_query(url))
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
