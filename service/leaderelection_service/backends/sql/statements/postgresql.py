"""PostgreSQL's lease statements: the shared forms, notifying, and the batch forms.

Example::

    st = postgresql('"public"."leaderelection_leases"', "public.leaderelection_leases")
    st.renew_batch      # UPDATE … FROM unnest(…) … RETURNING …

The clock is ``statement_timestamp()``: one value for the whole statement.
Every write calls ``pg_notify`` in the same statement, so a listener hears of
it at commit, never before the write is durable (I3).

The batch forms (``backends/batching.py`` gathers the calls) run the same compare-and-set
for many keys in one statement, with rows locked in key order so that two
batches (of this or another replica) never wait on each other in a cycle;
each key's answer is what its single statement would say.
"""

from __future__ import annotations

from leaderelection_service.backends.sql.statements.common import (
    COLUMNS,
    KEEP,
    PLAIN,
    READ,
    Statements,
    on_conflict,
    standard,
)

NOW = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"
"""PostgreSQL's clock in microseconds, one value for the whole statement."""

# The closed term appended to past when a new term begins, as {h, t, a, e, b};
# the oldest dropped beyond KEEP.
APPEND = (
    f"(CASE WHEN jsonb_array_length(r.past) >= {KEEP} THEN r.past - 0 ELSE r.past END)"
    " || jsonb_build_array(jsonb_build_object('h', r.holder, 't', r.fencing_token,"
    " 'a', r.acquired_us, 'e', r.expires_us, 'v', r.lease_value,"
    " 'b', CASE WHEN r.revoked THEN 'revoked' WHEN r.released AND r.successor IS NOT NULL"
    " THEN 'transferred' WHEN r.released THEN 'released'"
    " ELSE 'expired' END))"
)


def postgresql(table: str, channel: str, first: str = "1", first_batch: str = "1") -> Statements:
    now = NOW
    st = standard("postgresql", table, now, "'[]'::jsonb", APPEND, "fl.n")
    # A key's first token and revision (the floor + 1, floor.py) computed once per
    # statement: INSERT … SELECT … FROM (SELECT first) rather than VALUES naming it twice.
    st_acquire = st.acquire.replace("VALUES (", "SELECT ", 1).replace(
        "%(value)s, FALSE, FALSE, NULL)\n",
        f"%(value)s, FALSE, FALSE, NULL::text\nFROM (SELECT {first} AS n) AS fl\n",
        1,
    )
    assert " AS fl\n" in st_acquire, "the shared acquire's VALUES changed: update this form"
    # Tell listeners in the same statement (delivered at commit, so never
    # before the write is durable). A refused acquire answers with the current
    # row in the same round trip, which is what waiting candidates mostly get.
    notify = f"pg_notify('{channel}', lease_key) IS NULL AS notified"
    returning = f"RETURNING {READ}, {now} AS now_us"

    def notifying(sql: str) -> str:
        return sql.replace(returning, f"{returning}, {notify}")

    # Rule "acquire granted when free or already held by the caller": the
    # shared upsert; when it refuses (held by another), the current row with
    # granted = FALSE, so that lease_held carries the record in one round trip.
    acquire = f"""
WITH up AS ({notifying(st_acquire)})
SELECT {READ}, now_us, TRUE AS granted FROM up
UNION ALL
SELECT {READ}, {now}, FALSE FROM {table}
WHERE lease_key = %(key)s AND NOT EXISTS (SELECT 1 FROM up)"""
    # Rule "acquire granted when free or already held by the caller", for many
    # keys: on_conflict's compare-and-set per key, refused keys answered with
    # their current row. INSERT … SELECT … ORDER BY inserts (and, on conflict,
    # locks) in that order, the order the renew batch locks in: lease_key is
    # COLLATE "C", so the keys are sorted the same way here.
    acquire_batch = f"""
WITH q AS (
  SELECT * FROM unnest(%(keys)s::text[], %(holders)s::text[], %(ttls)s::bigint[],
                       %(values)s::text[]) AS q(k, h, ttl, v)
), up AS (
  INSERT INTO {table} AS r ({COLUMNS})
  SELECT k, h, fl.n, ttl, {now}, {now}, {now} + ttl, 0, FALSE, fl.n, '[]'::jsonb, v, FALSE, FALSE,
         NULL::text
  FROM q CROSS JOIN LATERAL (SELECT {first_batch} AS n) AS fl ORDER BY k COLLATE "C"
  {on_conflict(now, APPEND)}
  {returning}, {notify}
)
SELECT {READ}, now_us, TRUE AS granted FROM up
UNION ALL
SELECT {READ}, {now}, FALSE FROM {table}
WHERE lease_key IN (SELECT k FROM q) AND lease_key NOT IN (SELECT lease_key FROM up)"""
    qualified = ", ".join("r." + c.strip() for c in READ.split(","))
    # Rule "renew only by the holder with its fencing token", for many keys:
    # the single renew's SET and WHERE per key; a refused key returns no row
    # (its caller runs the single statement, which reads why).
    renew_batch = f"""
WITH q AS (
  SELECT * FROM unnest(%(keys)s::text[], %(holders)s::text[], %(tokens)s::bigint[],
                       %(ttls)s::bigint[], %(values)s::text[], %(announced)s::boolean[])
    AS q(k, h, t, ttl, v, an)
), locked AS (
  SELECT lease_key FROM {table} WHERE lease_key IN (SELECT k FROM q)
  ORDER BY lease_key FOR UPDATE
)
UPDATE {table} AS r SET
  ttl_us = COALESCE(q.ttl, r.ttl_us),
  renewed_us = {now},
  expires_us = {now} + COALESCE(q.ttl, r.ttl_us),
  revision = r.revision + 1,
  lease_value = COALESCE(q.v, r.lease_value),
  announced = COALESCE(q.an, r.announced)
FROM q
WHERE r.lease_key = q.k AND r.holder = q.h AND r.fencing_token = q.t AND NOT r.released
  AND r.successor IS NULL AND r.{PLAIN}
  AND r.lease_key IN (SELECT lease_key FROM locked)
RETURNING {qualified}, {now} AS now_us, pg_notify('{channel}', r.lease_key) IS NULL AS notified"""
    return Statements(
        "postgresql",
        acquire,
        notifying(st.renew),  # rule "renew only by the holder with its fencing token"
        notifying(st.release),  # rule "release only by the holder with its fencing token"
        st.get,
        st.now,
        st.scan,
        st.scan_to,
        revoke=notifying(st.revoke),  # rule "revoke"
        transfer=notifying(st.transfer),  # rule "transfer", by the holder
        handover=notifying(st.handover),  # rule "transfer", by an operator
        acquire_batch=acquire_batch,
        renew_batch=renew_batch,
    )
