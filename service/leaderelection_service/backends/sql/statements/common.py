"""What every dialect's lease statements are, and the forms PostgreSQL and SQLite share.

Example::

    st = standard("sqlite", '"leases"', now=SQLITE_NOW, empty="'[]'", append=append)
    st.acquire      # INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING …

Each statement states one rule of docs/contract.md ("Operations") with the
database's clock (``now`` below) read inside the statement, so that one
round trip decides and writes (a compare-and-set, never read-then-write):

- acquire is granted when the lease is free (never acquired, released, or
  expired: ``expires_us + allowance <= now``) or already held by the caller
  (idempotent: same token, expiry extended); otherwise nothing is written.
- a new term takes fencing token + 1; transitions count holder changes; the
  closed term is appended to ``past``.
- renew and release only by the holder with its fencing token, while not
  released (a renew past expiry is granted while no one took the lease).

Every write bumps ``revision``. Keys, holders and numbers are only ever bound
parameters; table names are validated identifiers quoted by SQLAlchemy.
Statements use ``%(name)s`` placeholders (SQLite's module converts them).
Rows come back as ``COLUMNS`` then ``now_us`` and are read by those names
(``rows.py``), never by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from leaderelection_service.records import HISTORY_LIMIT

COLUMNS = (
    "lease_key, holder, fencing_token, ttl_us, acquired_us, renewed_us, expires_us, "
    "transitions, released, revision, past, lease_value, announced, revoked, successor"
)
READ = f"{COLUMNS}, lease_limit, slots"
"""What every statement returns of a row: ``COLUMNS`` and the semaphore columns
(schema version 3), which only ``backends/sql/semaphore_path.py`` writes."""
PLAIN = "slots IS NULL"
"""Rule "one record per key": these statements decide for plain leases only; a
semaphore row (``slots`` set) is refused, and the backend takes the semaphore path."""
KEEP = HISTORY_LIMIT - 1
"""Closed terms kept in ``past``; the row itself is the current term."""
OWNER = "lease_key = %(key)s AND holder = %(holder)s AND fencing_token = %(token)s"
"""Rule "renew and release only by the holder with its fencing token"."""


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
    revoke: str = ""
    """Returns the row and ``now_us`` when granted (MariaDB: see ``two_step``)."""
    transfer: str = ""
    """The holder's transfer (``key``, ``holder``, ``token``, ``to``), as ``revoke``."""
    handover: str = ""
    """An operator's transfer (``key``, ``to``, ``allow_us``), as ``revoke``."""
    two_step: bool = False
    """MariaDB has no ``UPDATE … RETURNING``: renew and release are an UPDATE
    whose row count says granted, then ``get`` in the same transaction."""
    acquire_batch: str | None = None
    """PostgreSQL: acquire for arrays ``keys``, ``holders``, ``ttls`` (distinct
    keys); a row per key as ``acquire`` answers it (granted or not)."""
    renew_batch: str | None = None
    """PostgreSQL: renew for arrays ``keys``, ``holders``, ``tokens``, ``ttls``
    (distinct keys); a row per renewed key, none for a refused one."""


def free(now: str) -> str:
    """Rule "a lease is free when released or expired" (plus the skew allowance)."""
    return f"(r.released OR r.expires_us + %(allow_us)s <= {now})"


def open_to_caller(now: str) -> str:
    """Rule "transfer": a free lease with a successor is the successor's alone for
    one ttl after its term ended (plus the skew allowance)."""
    return (
        "(r.successor IS NULL OR r.successor = excluded.holder"
        f" OR r.expires_us + r.ttl_us + %(allow_us)s <= {now})"
    )


def on_conflict(now: str, append: str) -> str:
    """Acquire's compare-and-set when the key exists: a new term, an extension, or nothing."""
    is_free = f"({free(now)} AND {open_to_caller(now)})"
    # Rule "acquire granted when free or already held by the caller": the WHERE
    # refuses anyone else. On a free lease a new term begins ("fencing token + 1
    # on a new term", "transitions count holder changes", the closed term kept
    # in past); for the holder itself the same term is extended (idempotent).
    # Rule "value": a new term takes the acquire's value (none if it sent none);
    # the holder's own acquire replaces it only when it sends one.
    return f"""ON CONFLICT (lease_key) DO UPDATE SET
  holder = excluded.holder,
  fencing_token = CASE WHEN {is_free} THEN r.fencing_token + 1 ELSE r.fencing_token END,
  ttl_us = excluded.ttl_us,
  acquired_us = CASE WHEN {is_free} THEN excluded.acquired_us ELSE r.acquired_us END,
  renewed_us = excluded.renewed_us,
  expires_us = excluded.expires_us,
  transitions = r.transitions
    + CASE WHEN {is_free} AND r.holder <> excluded.holder THEN 1 ELSE 0 END,
  released = FALSE,
  revision = r.revision + 1,
  past = CASE WHEN {is_free} THEN {append} ELSE r.past END,
  lease_value = CASE WHEN {is_free} THEN excluded.lease_value
    ELSE COALESCE(excluded.lease_value, r.lease_value) END,
  announced = CASE WHEN {is_free} OR excluded.lease_value IS NOT NULL
    THEN FALSE ELSE r.announced END,
  revoked = FALSE,
  successor = NULL
WHERE ({is_free} OR (r.holder = excluded.holder AND r.successor IS NULL)) AND r.{PLAIN}"""


def standard(
    dialect: str, table: str, now: str, empty: str, append: str, first: str = "1"
) -> Statements:
    """The statements in the SQL PostgreSQL and SQLite share (``INSERT … ON CONFLICT``).

    ``first``: a key's first token and revision (``floor.py``: the floor + 1)."""
    # Rule "acquire granted when free or already held by the caller": a key
    # never acquired gets its first term (token 1, no transitions); an existing
    # one goes through on_conflict's compare-and-set.
    acquire = f"""
INSERT INTO {table} AS r ({COLUMNS})
VALUES (%(key)s, %(holder)s, {first}, %(ttl_us)s, {now}, {now}, {now} + %(ttl_us)s, 0, FALSE,
        {first}, {empty}, %(value)s, FALSE, FALSE, NULL)
{on_conflict(now, append)}
RETURNING {READ}, {now} AS now_us"""
    # Rule "renew only by the holder with its fencing token": the same term,
    # extended from now, even past expiry while it was not released. Rule
    # "value": a renew that sends one replaces it (``announced`` says whether
    # every watcher is told; both NULL: unchanged).
    renew = f"""
UPDATE {table} SET
  ttl_us = COALESCE(%(ttl_us)s, ttl_us),
  renewed_us = {now},
  expires_us = {now} + COALESCE(%(ttl_us)s, ttl_us),
  revision = revision + 1,
  lease_value = COALESCE(%(value)s, lease_value),
  announced = COALESCE(%(announced)s, announced)
WHERE {OWNER} AND NOT released AND successor IS NULL AND {PLAIN}
RETURNING {READ}, {now} AS now_us"""
    # Rule "release only by the holder with its fencing token": free at once,
    # the row (and its token counter) kept so that tokens never repeat.
    release = f"""
UPDATE {table} SET released = TRUE, expires_us = {now}, revision = revision + 1
WHERE {OWNER} AND NOT released AND {PLAIN}
RETURNING {READ}, {now} AS now_us"""
    # Rule "revoke": an operator ends the current term at once, held or lapsed;
    # an already released or revoked lease is left as it is.
    revoke = f"""
UPDATE {table} SET released = TRUE, revoked = TRUE, expires_us = {now}, revision = revision + 1
WHERE lease_key = %(key)s AND NOT released AND {PLAIN}
RETURNING {READ}, {now} AS now_us"""
    transfer, handover = transfers(table, now)
    transfer += f"\nRETURNING {READ}, {now} AS now_us"
    handover += f"\nRETURNING {READ}, {now} AS now_us"
    return Statements(
        dialect,
        acquire,
        renew,
        release,
        *reads(table, now),
        revoke=revoke,
        transfer=transfer,
        handover=handover,
    )


def transfers(table: str, now: str) -> tuple[str, str]:
    """The holder's and the operator's transfer, without RETURNING (MariaDB has none).

    A semaphore row (``slots`` set) is never transferred: only a key of limit 1
    has one holder to hand on."""
    # Rule "transfer" by the holder: as release (by the holder with its fencing
    # token, not released), the term ends now and names the successor, in one write.
    transfer = f"""
UPDATE {table} SET released = TRUE, expires_us = {now}, successor = %(to)s,
  revision = revision + 1
WHERE {OWNER} AND NOT released AND {PLAIN}"""
    # Rule "transfer" by an operator: the held term (not released, not lapsed)
    # names the successor, unless it is its holder or named already; the term goes on.
    handover = f"""
UPDATE {table} SET successor = %(to)s, revision = revision + 1
WHERE lease_key = %(key)s AND NOT released AND expires_us + %(allow_us)s > {now}
  AND holder <> %(to)s AND (successor IS NULL OR successor <> %(to)s) AND {PLAIN}"""
    return transfer, handover


def reads(table: str, now: str) -> tuple[str, str, str, str]:
    """``get``, ``now``, ``scan``, ``scan_to``: reads decide nothing; each row
    comes with the database clock (``now_us``) that judges whether it is held."""
    get = f"SELECT {READ}, {now} AS now_us FROM {table} WHERE lease_key = %(key)s"
    scan = (
        f"SELECT {READ}, {now} AS now_us FROM {table} "
        "WHERE lease_key >= %(lo)s AND lease_key > %(after)s ORDER BY lease_key LIMIT %(limit)s"
    )
    scan_to = scan.replace("ORDER BY", "AND lease_key < %(hi)s ORDER BY")
    return get, f"SELECT {now} AS now_us", scan, scan_to
