"""The lease gauges of ``/metrics``, kept in memory instead of read at every scrape.

Example::

    gauges = LeaseGauges(backend, refresh=15.0)      # clock=time.monotonic
    backend.observers.append(gauges.observe)         # this process's writes, at once
    counts = await gauges.counts(top=50)             # LeaseCounts(held=..., ...)

What each lease contributes (released or not, when it lapses, its transitions)
is kept per key. This process's own acquires, renewals and releases update it
as they are answered; whether a lease is held or expired is decided at each
scrape from the deadline remembered for it (on this process's monotonic clock,
from the backend's own answer of how long the lease had left), so an expiry
shows at the first scrape after it with no read. Writes made through other
replicas or workers come in with a full listing of the backend, which runs
in the background at start and then once the last one is older than
``refresh`` seconds when a scrape comes; a scrape waits for a listing only
when none succeeded yet, the last one failed, or none ended in the last ``2 *
refresh`` seconds and none is running (after a long pause in scraping). So
while Prometheus scrapes at least every ``refresh`` seconds, the gauges are at
most ``refresh`` plus one listing's duration behind other replicas' writes
(``leaderelection_leases_age_seconds`` says by how much), and a scrape at
20,000 leases costs a pass over memory, not a listing of the backend (1.3 s
and 40 MB, measured before).

Rejected: following the watch hub's events, since the hub reads only what
streams watch, and making it read every key for ``/metrics`` would list the
whole backend every ``watch_poll_interval`` (1 s) instead of every
``refresh``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from leaderelection_service.lease_errors import LeaseError
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend

log = logging.getLogger("leaderelection")

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """What one lease contributes to the gauges."""

    revision: int
    released: bool
    deadline: float
    """When it lapses, on the gauges' clock."""
    transitions: int


@dataclass(frozen=True)
class LeaseCounts:
    held: int
    released: int
    expired: int
    top: list[tuple[str, int]]
    """(key, transitions) of the keys with the most, most first."""
    other: int | None
    """Transitions of every other key summed (None: there is no other key)."""
    age: float
    """Seconds since the listing these counts rest on began."""


class LeaseGauges:
    def __init__(
        self,
        backend: LeaseBackend,
        *,
        refresh: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.refresh = refresh
        self.clock = clock
        self._leases: dict[str, Entry] | None = None
        self._listed_at: float | None = None
        """When the last successful listing began (what the gauges' age counts from)."""
        self._done_at: float | None = None
        """When it ended."""
        self._up = False
        self._task: asyncio.Task[None] | None = None
        self._gone: dict[str, tuple[int, float]] = {}
        """Keys this process deleted: (last revision, when), until a listing begun later."""

    def _entry(self, view: LeaseView) -> Entry:
        rec = view.record
        if rec.slots:  # a semaphore key is one lease, held while any of its slots is
            live = [s for s in rec.slots if not s.released]
            if live:
                free = max(s.free_at(view.allowance) for s in live)
                left = (free - view.server_time).total_seconds()
                return Entry(rec.revision, False, self.clock() + left, rec.transitions)
            return Entry(rec.revision, True, self.clock(), rec.transitions)
        left = (rec.free_at(view.allowance) - view.server_time).total_seconds()
        return Entry(rec.revision, rec.released, self.clock() + left, rec.transitions)

    def observe(self, view: LeaseView) -> None:
        """A write this process made: counted at once (nothing kept before the first listing)."""
        if self._leases is None:
            return
        kept = self._leases.get(view.record.key)
        if kept is None or kept.revision <= view.record.revision:
            self._leases[view.record.key] = self._entry(view)

    def forget(self, view: LeaseView) -> None:
        """A delete this process made: the key counts no more, at once."""
        key = view.record.key
        self._gone[key] = (view.record.revision, self.clock())
        if self._leases is not None:
            kept = self._leases.get(key)
            if kept is not None and kept.revision <= view.record.revision:
                del self._leases[key]

    async def _list(self) -> None:
        started = self.clock()
        fresh: dict[str, Entry] = {}
        after: str | None = None
        try:
            while True:
                page = await self.backend.list("", after, PAGE)
                for view in page:
                    fresh[view.record.key] = self._entry(view)
                if len(page) < PAGE:
                    break
                after = page[-1].record.key
        except Exception as exc:  # a scrape always answers; backend_up 0 says why
            message = exc.message if isinstance(exc, LeaseError) else repr(exc)
            log.warning("metrics: cannot list the leases: %s", message)
            self._up = False
            return
        # Writes observed while the listing ran may be newer than what it read.
        for key, kept in (self._leases or {}).items():
            listed = fresh.get(key)
            if listed is None or listed.revision < kept.revision:
                fresh[key] = kept
        # A listing that began before a delete may still have read the key.
        for key, (revision, when) in list(self._gone.items()):
            if key in fresh and fresh[key].revision <= revision:
                del fresh[key]
            if when < started:
                del self._gone[key]
        self._leases, self._listed_at, self._up = fresh, started, True
        self._done_at = self.clock()

    def start(self) -> None:
        """List once in the background now, so that the first scrape answers from memory."""
        self._start_listing()

    def _start_listing(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._list(), name="lease-gauges")
        return self._task

    async def counts(self, top: int) -> LeaseCounts | None:
        """The gauges now; None if the backend cannot be listed (backend_up 0)."""
        now = self.clock()
        age = now - self._listed_at if self._listed_at is not None else float("inf")
        idle = now - self._done_at if self._done_at is not None else float("inf")
        listing = self._task is not None and not self._task.done()
        if not self._up or (idle > 2 * self.refresh and not listing):
            await asyncio.shield(self._start_listing())
        elif age > self.refresh:
            # For the next scrapes; this one answers from memory, also while a
            # listing runs (at 20,000 leases it takes seconds on a busy host).
            self._start_listing()
        if not self._up or self._leases is None or self._listed_at is None:
            return None
        now = self.clock()
        held = released = 0
        for entry in self._leases.values():
            if entry.released:
                released += 1
            elif now < entry.deadline:
                held += 1
        ranked = heapq.nsmallest(
            top, self._leases.items(), key=lambda kv: (-kv[1].transitions, kv[0])
        )
        named = [(key, entry.transitions) for key, entry in ranked]
        rest = len(self._leases) - len(named)
        total = sum(e.transitions for e in self._leases.values())
        other = total - sum(n for _, n in named) if rest else None
        expired = len(self._leases) - held - released
        return LeaseCounts(held, released, expired, named, other, now - self._listed_at)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
