"""The lease rules as SQL: one compare-and-set statement per operation and dialect.

Example::

    st = statements_for("postgresql", '"public"."leaderelection_leases"', channel)
    cur.execute(st.acquire, {"key": "cron", "holder": "a", "ttl_us": 5_000_000, ...})

``common.py`` holds the ``Statements`` each dialect fills in and the forms
PostgreSQL and SQLite share; ``postgresql.py``, ``sqlite.py`` and
``mariadb.py`` hold each dialect's own text. Every statement carries a
comment naming the rule of docs/contract.md it encodes.
"""

from __future__ import annotations

from leaderelection_service.backends.sql.statements.common import COLUMNS, Statements
from leaderelection_service.backends.sql.statements.mariadb import mariadb
from leaderelection_service.backends.sql.statements.postgresql import postgresql
from leaderelection_service.backends.sql.statements.sqlite import sqlite

__all__ = ["COLUMNS", "Statements", "statements_for"]


def statements_for(
    dialect: str, table: str, channel: str, first: str = "1", first_batch: str = "1"
) -> Statements:
    """The statements for SQLAlchemy dialect ``dialect`` over the quoted ``table``.

    ``first`` (``first_batch`` in PostgreSQL's batch acquire): the SQL of a
    key's first token and revision, the token floor + 1 (``floor.py``)."""
    if dialect == "postgresql":
        return postgresql(table, channel, first, first_batch)
    if dialect == "sqlite":
        return sqlite(table, first)
    if dialect in ("mysql", "mariadb"):
        return mariadb(table, first)
    raise ValueError(f"SQL dialect {dialect!r} is not supported")
