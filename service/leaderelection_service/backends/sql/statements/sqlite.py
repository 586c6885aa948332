"""SQLite's lease statements: the shared forms with SQLite's clock, JSON and placeholders.

Example::

    st = sqlite('"leaderelection_leases"')
    cur.execute(st.acquire, {"key": "cron", "holder": "a", "ttl_us": 5_000_000, ...})

SQLite returns no row from a refused acquire (``threaded.py`` then reads the
current one on the same connection). Its ``sqlite3`` module takes ``:name``
placeholders, converted here from the shared ``%(name)s``.
"""

from __future__ import annotations

import re

from leaderelection_service.backends.sql.statements.common import KEEP, Statements, standard

NOW = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"
"""SQLite's clock in microseconds: ``julianday('now')`` is fixed for the whole
statement; milliseconds are its precision."""

# The closed term appended to past when a new term begins (see postgresql.APPEND).
APPEND = (
    "json_insert(CASE WHEN json_array_length(r.past) >= "
    f"{KEEP} THEN json_remove(r.past, '$[0]') ELSE r.past END, '$[#]',"
    " json_object('h', r.holder, 't', r.fencing_token, 'a', r.acquired_us,"
    " 'e', r.expires_us, 'v', r.lease_value,"
    " 'b', CASE WHEN r.revoked THEN 'revoked' WHEN r.released THEN 'released'"
    " ELSE 'expired' END))"
)


def sqlite(table: str, first: str = "1") -> Statements:
    # The rules of each statement are named where common.standard writes it.
    st = standard("sqlite", table, NOW, "'[]'", APPEND, first)
    return Statements(
        "sqlite",
        *(
            re.sub(r"%\((\w+)\)s", r":\1", s)
            for s in (st.acquire, st.renew, st.release, st.get, st.now, st.scan, st.scan_to)
        ),
        revoke=re.sub(r"%\((\w+)\)s", r":\1", st.revoke),
    )
