"""The lease rules as SQL: one compare-and-set statement per operation.

Example::

    st = statements_for("postgresql", '"public"."leaderelection_leases"', channel)
    cur.execute(st.acquire, {"key": "cron", "holder": "a", "ttl_us": 5_000_000, ...})

Each statement states the rules of ``leases.py`` (CONTRACT.md, "Operations")
with the database's clock (``NOW`` below) read inside the statement:

- acquire: insert the key, or on conflict start a new term when the row is
  free (``released`` or ``expires_us + allowance <= NOW``): token + 1,
  transitions + 1 if the holder changed, the closed term appended to ``past``;
  or extend it (same token) when the caller already holds it; else no write.
- renew: ``UPDATE … WHERE holder AND token AND NOT released`` (even past expiry).
- release: the same condition; ``released``, ``expires_us = NOW``.

PostgreSQL also has a batch form of acquire and renew (``batch.py``): the
same compare-and-set for many keys in one statement, rows locked in key
order so that two batches (of this or another replica) never wait on each
other in a cycle; each key's answer is what its single statement would say.

Every write bumps ``revision``. Keys, holders and numbers are only ever bound
parameters; table names are validated identifiers quoted by SQLAlchemy.
Statements use ``%(name)s`` placeholders (converted for ``sqlite3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leaderelection_service.records import HISTORY_LIMIT

COLUMNS = (
    "lease_key, holder, fencing_token, ttl_us, acquired_us, renewed_us, expires_us, "
    "transitions, released, revision, past"
)
PG_NOW = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"
"""PostgreSQL's clock in microseconds, one value for the whole statement."""
_KEEP = HISTORY_LIMIT - 1  # closed terms kept; the row itself is the current term


@dataclass(frozen=True, slots=True)
class Statements:
    dialect: str
    acquire: str
    """Returns the row and ``now_us`` when granted; no row when held by another."""
    renew: str
    """Returns the row and ``now_us`` when granted (MariaDB: see ``two_step``)."""
    release: str
    get: str
    """One row and ``now_us``, or none."""
    now: str
    scan: str
    scan_to: str
    """``scan`` with an upper bound (``hi``), for a non-empty prefix."""
    two_step: bool = False
    """MariaDB has no ``UPDATE … RETURNING``: renew and release are an UPDATE
    whose row count says granted, then ``get`` in the same transaction."""
    acquire_batch: str | None = None
    """PostgreSQL: acquire for arrays ``keys``, ``holders``, ``ttls`` (distinct
    keys); a row per key as ``acquire`` answers it (granted or not)."""
    renew_batch: str | None = None
    """PostgreSQL: renew for arrays ``keys``, ``holders``, ``tokens``, ``ttls``
    (distinct keys); a row per renewed key, none for a refused one."""


def _free(now: str) -> str:
    """The row may start a new term: released, or lapsed (plus the skew allowance)."""
    return f"(r.released OR r.expires_us + %(allow_us)s <= {now})"


def _on_conflict(now: str, append: str) -> str:
    """Acquire's compare-and-set when the key exists: a new term, an extension, or nothing."""
    free = _free(now)
    return f"""ON CONFLICT (lease_key) DO UPDATE SET
  holder = excluded.holder,
  fencing_token = CASE WHEN {free} THEN r.fencing_token + 1 ELSE r.fencing_token END,
  ttl_us = excluded.ttl_us,
  acquired_us = CASE WHEN {free} THEN excluded.acquired_us ELSE r.acquired_us END,
  renewed_us = excluded.renewed_us,
  expires_us = excluded.expires_us,
  transitions = r.transitions
    + CASE WHEN {free} AND r.holder <> excluded.holder THEN 1 ELSE 0 END,
  released = FALSE,
  revision = r.revision + 1,
  past = CASE WHEN {free} THEN {append} ELSE r.past END
WHERE {free} OR r.holder = excluded.holder"""


def _pg_like(dialect: str, table: str, now: str, empty: str, append: str) -> Statements:
    acquire = f"""
INSERT INTO {table} AS r ({COLUMNS})
VALUES (%(key)s, %(holder)s, 1, %(ttl_us)s, {now}, {now}, {now} + %(ttl_us)s, 0, FALSE, 1, {empty})
{_on_conflict(now, append)}
RETURNING {COLUMNS}, {now} AS now_us"""
    owner = "lease_key = %(key)s AND holder = %(holder)s AND fencing_token = %(token)s"
    renew = f"""
UPDATE {table} SET
  ttl_us = COALESCE(%(ttl_us)s, ttl_us),
  renewed_us = {now},
  expires_us = {now} + COALESCE(%(ttl_us)s, ttl_us),
  revision = revision + 1
WHERE {owner} AND NOT released
RETURNING {COLUMNS}, {now} AS now_us"""
    release = f"""
UPDATE {table} SET released = TRUE, expires_us = {now}, revision = revision + 1
WHERE {owner} AND NOT released
RETURNING {COLUMNS}, {now} AS now_us"""
    return Statements(dialect, acquire, renew, release, *_reads(table, now))


def _reads(table: str, now: str) -> tuple[str, str, str, str]:
    get = f"SELECT {COLUMNS}, {now} AS now_us FROM {table} WHERE lease_key = %(key)s"
    scan = (
        f"SELECT {COLUMNS}, {now} AS now_us FROM {table} "
        "WHERE lease_key >= %(lo)s AND lease_key > %(after)s ORDER BY lease_key LIMIT %(limit)s"
    )
    scan_to = scan.replace("ORDER BY", "AND lease_key < %(hi)s ORDER BY")
    return get, f"SELECT {now} AS now_us", scan, scan_to


def _postgresql(table: str, channel: str) -> Statements:
    now = PG_NOW
    append = (
        f"(CASE WHEN jsonb_array_length(r.past) >= {_KEEP} THEN r.past - 0 ELSE r.past END)"
        " || jsonb_build_array(jsonb_build_object('h', r.holder, 't', r.fencing_token,"
        " 'a', r.acquired_us, 'e', r.expires_us,"
        " 'b', CASE WHEN r.released THEN 'released' ELSE 'expired' END))"
    )
    st = _pg_like("postgresql", table, now, "'[]'::jsonb", append)
    # Tell listeners in the same statement (delivered at commit, so never
    # before the write is durable). A refused acquire answers with the current
    # row in the same round trip, which is what waiting candidates mostly get.
    notify = f"pg_notify('{channel}', lease_key) IS NULL AS notified"
    returning = f"RETURNING {COLUMNS}, {now} AS now_us"

    def notifying(sql: str) -> str:
        return sql.replace(returning, f"{returning}, {notify}")

    acquire = f"""
WITH up AS ({notifying(st.acquire)})
SELECT {COLUMNS}, now_us, TRUE AS granted FROM up
UNION ALL
SELECT {COLUMNS}, {now}, FALSE FROM {table}
WHERE lease_key = %(key)s AND NOT EXISTS (SELECT 1 FROM up)"""
    # The batch forms. INSERT … SELECT … ORDER BY inserts (and, on conflict,
    # locks) in that order, the order the renew batch locks in: lease_key is
    # COLLATE "C", so the keys are sorted the same way here.
    acquire_batch = f"""
WITH q AS (
  SELECT * FROM unnest(%(keys)s::text[], %(holders)s::text[], %(ttls)s::bigint[]) AS q(k, h, ttl)
), up AS (
  INSERT INTO {table} AS r ({COLUMNS})
  SELECT k, h, 1, ttl, {now}, {now}, {now} + ttl, 0, FALSE, 1, '[]'::jsonb
  FROM q ORDER BY k COLLATE "C"
  {_on_conflict(now, append)}
  {returning}, {notify}
)
SELECT {COLUMNS}, now_us, TRUE AS granted FROM up
UNION ALL
SELECT {COLUMNS}, {now}, FALSE FROM {table}
WHERE lease_key IN (SELECT k FROM q) AND lease_key NOT IN (SELECT lease_key FROM up)"""
    qualified = ", ".join("r." + c.strip() for c in COLUMNS.split(","))
    renew_batch = f"""
WITH q AS (
  SELECT * FROM unnest(%(keys)s::text[], %(holders)s::text[], %(tokens)s::bigint[],
                       %(ttls)s::bigint[]) AS q(k, h, t, ttl)
), locked AS (
  SELECT lease_key FROM {table} WHERE lease_key IN (SELECT k FROM q)
  ORDER BY lease_key FOR UPDATE
)
UPDATE {table} AS r SET
  ttl_us = COALESCE(q.ttl, r.ttl_us),
  renewed_us = {now},
  expires_us = {now} + COALESCE(q.ttl, r.ttl_us),
  revision = r.revision + 1
FROM q
WHERE r.lease_key = q.k AND r.holder = q.h AND r.fencing_token = q.t AND NOT r.released
  AND r.lease_key IN (SELECT lease_key FROM locked)
RETURNING {qualified}, {now} AS now_us, pg_notify('{channel}', r.lease_key) IS NULL AS notified"""
    return Statements(
        "postgresql",
        acquire,
        notifying(st.renew),
        notifying(st.release),
        st.get,
        st.now,
        st.scan,
        st.scan_to,
        acquire_batch=acquire_batch,
        renew_batch=renew_batch,
    )


def _sqlite(table: str) -> Statements:
    # julianday('now') is fixed for the whole statement; milliseconds are its precision.
    now = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"
    append = (
        "json_insert(CASE WHEN json_array_length(r.past) >= "
        f"{_KEEP} THEN json_remove(r.past, '$[0]') ELSE r.past END, '$[#]',"
        " json_object('h', r.holder, 't', r.fencing_token, 'a', r.acquired_us,"
        " 'e', r.expires_us, 'b', CASE WHEN r.released THEN 'released' ELSE 'expired' END))"
    )
    st = _pg_like("sqlite", table, now, "'[]'", append)
    return Statements(
        "sqlite",
        *(
            re.sub(r"%\((\w+)\)s", r":\1", s)
            for s in (st.acquire, st.renew, st.release, st.get, st.now, st.scan, st.scan_to)
        ),
    )


def _mariadb(table: str) -> Statements:
    now = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
    append = (
        f"JSON_ARRAY_APPEND(IF(JSON_LENGTH(past) >= {_KEEP}, JSON_REMOVE(past, '$[0]'), past),"
        " '$', JSON_OBJECT('h', holder, 't', fencing_token, 'a', acquired_us,"
        " 'e', expires_us, 'b', IF(released, 'released', 'expired')))"
    )
    mine = "(@free OR holder = VALUES(holder))"
    # Assignments run left to right and later ones see earlier results, so the
    # decision is taken once into @free and the holder is assigned last.
    acquire = f"""
INSERT INTO {table} ({COLUMNS})
VALUES (%(key)s, %(holder)s, 1, %(ttl_us)s, {now}, {now}, {now} + %(ttl_us)s, 0, FALSE, 1, '[]')
ON DUPLICATE KEY UPDATE
  past = IF(@free := (released OR expires_us + %(allow_us)s <= VALUES(renewed_us)),
            {append}, past),
  transitions = transitions + IF(@free AND holder <> VALUES(holder), 1, 0),
  fencing_token = fencing_token + IF(@free, 1, 0),
  acquired_us = IF(@free, VALUES(acquired_us), acquired_us),
  revision = IF({mine}, revision + 1, revision),
  ttl_us = IF({mine}, VALUES(ttl_us), ttl_us),
  renewed_us = IF({mine}, VALUES(renewed_us), renewed_us),
  expires_us = IF({mine}, VALUES(expires_us), expires_us),
  released = IF({mine}, FALSE, released),
  holder = IF(@free, VALUES(holder), holder)
RETURNING {COLUMNS}, {now} AS now_us"""
    owner = "lease_key = %(key)s AND holder = %(holder)s AND fencing_token = %(token)s"
    renew = f"""
UPDATE {table} SET
  ttl_us = COALESCE(%(ttl_us)s, ttl_us),
  renewed_us = @now,
  expires_us = @now + ttl_us,
  revision = revision + 1
WHERE {owner} AND NOT released"""
    release = f"""
UPDATE {table} SET released = TRUE, expires_us = @now, revision = revision + 1
WHERE {owner} AND NOT released"""
    get, _, scan, scan_to = _reads(table, now)
    return Statements(
        "mariadb",
        acquire,
        renew,
        release,
        get.replace(f"{now} AS now_us", "@now AS now_us"),
        f"SET @now = {now}",
        scan,
        scan_to,
        two_step=True,
    )


def statements_for(dialect: str, table: str, channel: str) -> Statements:
    """The statements for SQLAlchemy dialect ``dialect`` over the quoted ``table``."""
    if dialect == "postgresql":
        return _postgresql(table, channel)
    if dialect == "sqlite":
        return _sqlite(table)
    if dialect in ("mysql", "mariadb"):
        return _mariadb(table)
    raise ValueError(f"SQL dialect {dialect!r} is not supported")
