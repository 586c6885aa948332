"""The SQL backend's table names: the default one, and the rule every name obeys.

Example::

    check_identifier("sql_table", "jobs_leases")   # returns it
    check_identifier("sql_table", "x; DROP y")     # ValueError naming sql_table

Defined once here for the two that need them: ``settings`` (a bad
``LEADERELECTION_SQL_TABLE`` or ``--sql-table`` stops the service at start)
and the SQL backend (``SqlLeases`` checks the names it is handed). A module of
its own, with no imports, because ``settings`` must not load SQLAlchemy for a
service that never opens a SQL URL, and the backend must not import the
settings layer above it.

Names are interpolated into DDL and statements (quoted by the dialect), so
only plain identifiers pass: letters, digits and ``_``, not starting with a
digit, at most 48 characters (room for the ``_meta`` suffix and PostgreSQL's
63-byte limit on the NOTIFY channel ``<schema>.<table>``).
"""

from __future__ import annotations

import re

DEFAULT_TABLE = "leaderelection_leases"
"""The lease table when none is configured; its version lives in ``<table>_meta``."""

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def check_identifier(what: str, name: str) -> str:
    """``name`` if it is a plain SQL identifier, else ValueError naming ``what``."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain SQL identifier "
            "(letters, digits and _, starting with a letter or _, at most 48 characters)"
        )
    return name
