"""MariaDB's lease statements: ``INSERT … ON DUPLICATE KEY UPDATE`` and two-step writes.

Example::

    st = mariadb("`leaderelection_leases`")
    cur.execute(st.now)                 # SET @now = …: one clock for the transaction
    cur.execute(st.renew, params)       # rowcount 1: granted
    cur.execute(st.get, {"key": key})   # the row as the UPDATE left it

MariaDB (10.5+) returns rows from ``INSERT`` but not from ``UPDATE``: renew
and release are an UPDATE whose row count says granted, then ``get`` in the
same short transaction (``Statements.two_step``, run by ``threaded.py``).
"""

from __future__ import annotations

from leaderelection_service.backends.sql.statements.common import (
    COLUMNS,
    KEEP,
    OWNER,
    PLAIN,
    READ,
    Statements,
    reads,
    transfers,
)

NOW = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
"""MariaDB's clock in microseconds."""

# The closed term appended to past when a new term begins (see postgresql.APPEND).
APPEND = (
    f"JSON_ARRAY_APPEND(IF(JSON_LENGTH(past) >= {KEEP}, JSON_REMOVE(past, '$[0]'), past),"
    " '$', JSON_OBJECT('h', holder, 't', fencing_token, 'a', acquired_us,"
    " 'e', expires_us, 'v', lease_value,"
    " 'b', IF(revoked, 'revoked', IF(released, IF(successor IS NOT NULL, 'transferred',"
    " 'released'), 'expired'))))"
)


def mariadb(table: str, first: str = "1") -> Statements:
    now = NOW
    # A semaphore row (slots set) is neither free nor anyone's here: nothing changes,
    # and the backend takes the semaphore path.
    mine = f"(@free OR (holder = VALUES(holder) AND successor IS NULL AND {PLAIN}))"
    # Rule "acquire granted when free or already held by the caller": @free is
    # the lease being free (released, or expired past the allowance); then a
    # new term ("fencing token + 1 on a new term", "transitions count holder
    # changes"), or the caller's own term extended, or (anyone else) no change.
    # Rule "value": a new term takes the acquire's value, the caller's own
    # term keeps it unless the acquire sends one.
    # Assignments run left to right and later ones see earlier results, so the
    # decision is taken once into @free and the holder is assigned last.
    acquire = f"""
INSERT INTO {table} ({COLUMNS})
VALUES (%(key)s, %(holder)s, {first}, %(ttl_us)s, {now}, {now}, {now} + %(ttl_us)s, 0, FALSE,
        {first}, '[]', %(value)s, FALSE, FALSE, NULL)
ON DUPLICATE KEY UPDATE
  past = IF(@free := ({PLAIN} AND (released OR expires_us + %(allow_us)s <= VALUES(renewed_us))
                      AND (successor IS NULL OR successor = VALUES(holder)
                           OR expires_us + ttl_us + %(allow_us)s <= VALUES(renewed_us))),
            {APPEND}, past),
  transitions = transitions + IF(@free AND holder <> VALUES(holder), 1, 0),
  lease_value = IF(@free, VALUES(lease_value),
                   IF({mine}, COALESCE(VALUES(lease_value), lease_value), lease_value)),
  announced = IF(@free OR ({mine} AND VALUES(lease_value) IS NOT NULL), FALSE, announced),
  fencing_token = fencing_token + IF(@free, 1, 0),
  acquired_us = IF(@free, VALUES(acquired_us), acquired_us),
  revision = IF({mine}, revision + 1, revision),
  ttl_us = IF({mine}, VALUES(ttl_us), ttl_us),
  renewed_us = IF({mine}, VALUES(renewed_us), renewed_us),
  expires_us = IF({mine}, VALUES(expires_us), expires_us),
  released = IF({mine}, FALSE, released),
  revoked = IF({mine}, FALSE, revoked),
  successor = IF(@free, NULL, successor),
  holder = IF(@free, VALUES(holder), holder)
RETURNING {READ}, {now} AS now_us"""
    # Rule "renew only by the holder with its fencing token" (row count 1:
    # granted), at the @now that ``now`` set for this transaction.
    renew = f"""
UPDATE {table} SET
  ttl_us = COALESCE(%(ttl_us)s, ttl_us),
  renewed_us = @now,
  expires_us = @now + ttl_us,
  revision = revision + 1,
  lease_value = COALESCE(%(value)s, lease_value),
  announced = COALESCE(%(announced)s, announced)
WHERE {OWNER} AND NOT released AND successor IS NULL AND {PLAIN}"""
    # Rule "release only by the holder with its fencing token" (row count 1: granted).
    release = f"""
UPDATE {table} SET released = TRUE, expires_us = @now, revision = revision + 1
WHERE {OWNER} AND NOT released AND {PLAIN}"""
    # Rule "revoke": an operator ends the current term at once (row count 1: granted).
    revoke = f"""
UPDATE {table} SET released = TRUE, revoked = TRUE, expires_us = @now, revision = revision + 1
WHERE lease_key = %(key)s AND NOT released AND {PLAIN}"""
    transfer, handover = transfers(table, "@now")  # rule "transfer" (common.transfers)
    get, _, scan, scan_to = reads(table, now)
    return Statements(
        "mariadb",
        acquire,
        renew,
        release,
        get.replace(f"{now} AS now_us", "@now AS now_us"),
        f"SET @now = {now}",
        scan,
        scan_to,
        revoke=revoke,
        transfer=transfer,
        handover=handover,
        two_step=True,
    )
