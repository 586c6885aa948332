"""Concurrent renewals folded into one PostgreSQL statement and one commit.

Example::

    batcher = RenewBatcher(run_batch, max_batch=256, max_in_flight=4)
    granted_row = await batcher.renew("cron", "host-a", 7, 10_000_000)  # None: refused

Renewals are the bulk of a lease service's traffic (every holder, every few
seconds). Each costs a commit, and commits, not CPU, set the ceiling: one
connection does a few thousand a second. Here a renewal that arrives while
``max_in_flight`` batches are already running waits for the next batch; that
batch renews every waiting key in one ``UPDATE … FROM unnest(…)`` statement
with the same rules and the same database clock as the single renew, so each
caller gets its own answer. There is no timer: an idle service sends each
renewal at once, a busy one sends bigger batches (group commit).

A renewal the batch refused is answered by the single-row statement, which
reads the row as it is now and says why; a key renewed twice at once goes in
two batches, one after the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = Sequence[Any]


@dataclass
class _Pending:
    key: str
    holder: str
    token: int
    ttl_us: int | None
    done: asyncio.Future[Row | None] = field(default_factory=lambda: asyncio.Future())


BatchRunner = Callable[[list[tuple[str, str, int, int | None]]], Awaitable[list[Row]]]
"""Runs one batch statement; returns the rows it renewed (each with its key first)."""


class RenewBatcher:
    def __init__(self, run: BatchRunner, max_batch: int = 256, max_in_flight: int = 4) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self.batches = 0
        """How many batch statements ran (for tests and metrics)."""

    async def renew(self, key: str, holder: str, token: int, ttl_us: int | None) -> Row | None:
        """The renewed row, or None when the batch did not renew it."""
        item = _Pending(key, holder, token, ttl_us)
        self._queue.append(item)
        self._kick()
        return await item.done

    def _kick(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            batch, rest, seen = [], [], set()
            for item in self._queue:
                if item.key in seen or len(batch) >= self._max_batch:
                    rest.append(item)
                else:
                    seen.add(item.key)
                    batch.append(item)
            self._queue = rest
            self._in_flight += 1
            self.batches += 1
            asyncio.get_running_loop().create_task(self._flush(batch))

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            rows = await self._run([(p.key, p.holder, p.token, p.ttl_us) for p in batch])
        except BaseException as exc:
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            by_key = {row[0]: row for row in rows}
            for p in batch:
                if not p.done.done():
                    p.done.set_result(by_key.get(p.key))
        finally:
            self._in_flight -= 1
            self._kick()


def batch_renew_sql(table: str, now: str, columns: str, channel: str) -> str:
    """PostgreSQL: renew every (key, holder, token, ttl) of the arrays at once.

    Rows are locked in key order first, so two batches from two replicas can
    never wait on each other in a cycle (single-key statements lock one row).
    """
    return f"""
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
RETURNING {", ".join("r." + c.strip() for c in columns.split(","))}, {now} AS now_us,
  pg_notify('{channel}', r.lease_key) IS NULL AS notified"""
