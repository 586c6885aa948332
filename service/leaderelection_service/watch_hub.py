"""The watch hub: one task per process turns backend changes into lease events.

Example::

    hub = WatchHub(backend, poll_interval=1.0)
    await hub.start()
    sub = hub.subscribe(prefix="jobs.", owner="token #2 (read)")
    await hub.wait_ready(sub, timeout=10)   # the hub now reads what sub watches
    ...                                     # replay: list the prefix a page at a time
    hub.replayed(sub)
    event = await sub.get()        # WatchEvent(type="acquired", key="jobs.a", ...)
    hub.unsubscribe(sub)
    await hub.close()

How it works:

1. The task waits on ``backend.wait_for_change(timeout)``: PostgreSQL returns
   on ``LISTEN/NOTIFY`` from any replica; file and GCS (``CasLeases``) return
   at once for this process's own writes and otherwise after ``timeout``,
   which is ``poll_interval`` or less when a held lease is about to lapse. A
   new subscriber whose keys the last read did not cover wakes it at once.
2. It re-reads what subscribers watch (a ``get`` per watched key, a paged
   ``list`` per watched prefix) and diffs each record against the last one it
   saw (``events.transition``).
3. Each event goes to the matching *ready* subscribers' bounded queues. A
   subscriber whose queue is full is dropped (its stream ends with the reason;
   the client reconnects and the replay brings it up to date), so a slow
   reader never grows memory.

**The replay does not go through the queue.** A subscriber is *ready* once a
read of the hub covered its keys: from then on every change after that read
reaches its queue. Its stream then lists the current state itself, a page at
a time (``PAGE`` records in memory), and sends it ahead of the queued
changes; both are de-duplicated by version per key (``Subscription.accept``),
so no key goes backwards and a change made during the replay is either in
the replayed state or sent after it. So the replay of 10,000 keys costs the
queue nothing, and only live changes count against its ``QUEUE_SIZE``. The
rejected alternative, queueing each newly covered key's state as the hub
first reads it, is what overflowed the queue of any stream over more than
``QUEUE_SIZE`` keys. The versions sent are remembered per key only until a
read that began after the replay has become the hub's baseline (from then on
the hub's own events only go forwards); then they are forgotten.

With no subscriber the task sleeps and reads nothing. Backend errors are
logged and retried after ``poll_interval``; streams stay open, and a
subscriber still waiting to be ready is told (its request answers 503).
Cancelling ``close()`` ends every subscriber's stream.

**Caps.** ``MAX_SUBSCRIBERS`` streams per process (503 beyond, as for any
exhausted resource of the service), and ``per_owner`` per token (or per
client address without authentication), beyond which ``subscribe`` raises
``TooManyForOwner`` (429): one reader must not take every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from leaderelection_service import metric_families
from leaderelection_service.events import (
    Seen,
    WatchEvent,
    deleted,
    describe,
    recreated,
    seen,
    transition,
)
from leaderelection_service.lease_errors import BackendUnavailable, LeaseError, LeaseNotFound
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend
from leaderelection_service.subscription import (
    QUEUE_SIZE,
    Subscription,
    TooManyForOwner,
    TooManySubscribers,
)

log = logging.getLogger("leaderelection.watch")

MAX_SUBSCRIBERS = 1024
"""Open watch streams per process; more are refused with 503."""
PER_OWNER = 256
"""Default open watch streams per token (or client address): a quarter of the process's."""
PAGE = 1000
MIN_GAP = 0.02
"""Seconds between two reads at least, so a burst of writes is read once."""

Coverage = tuple[list[str], list[str]]
"""(prefixes, keys) one read of the hub covers."""


def _covers(coverage: Coverage, sub: Subscription) -> bool:
    prefixes, keys = coverage
    if sub.key is not None and sub.key in keys:
        return True
    wanted = sub.key if sub.key is not None else sub.prefix
    return any(wanted.startswith(p) for p in prefixes)


def _covered_key(coverage: Coverage, key: str) -> bool:
    prefixes, keys = coverage
    return key in keys or any(key.startswith(p) for p in prefixes)


class WatchHub:
    def __init__(
        self,
        backend: LeaseBackend,
        *,
        poll_interval: float = 1.0,
        queue_size: int = QUEUE_SIZE,
        per_owner: int = PER_OWNER,
    ) -> None:
        self.backend = backend
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self.per_owner = per_owner
        self._subs: set[Subscription] = set()
        self._owners: Counter[str] = Counter()
        self._seen: dict[str, Seen] = {}
        self._covered: Coverage = ([], [])
        """What the last successful read covered."""
        self._reading: Coverage | None = None
        """What the read under way covers."""
        self._reads = 0
        """Reads begun so far."""
        self._baseline = 0
        """The number of the last successful read (what the next one diffs against)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- subscribers -----------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(
        self, *, key: str | None = None, prefix: str = "", renewed: bool = False, owner: str = ""
    ) -> Subscription:
        """Start receiving events for ``key`` (or every key under ``prefix``).

        The subscription gets live events once ``wait_ready`` returns; its
        stream replays the current state itself, then calls ``replayed``.
        """
        if self._closed:
            raise TooManySubscribers("the service is shutting down")
        if len(self._subs) >= MAX_SUBSCRIBERS:
            raise TooManySubscribers(f"more than {MAX_SUBSCRIBERS} open watch streams")
        if self._owners[owner] >= self.per_owner:
            raise TooManyForOwner(
                f"{owner or 'this caller'} already has {self.per_owner} open watch streams, "
                "the most one caller may have"
            )
        sub = Subscription(key, prefix, renewed, asyncio.Queue(self.queue_size), owner=owner)
        # Ready at once if the read under way (or, between reads, the next one,
        # which keeps covering what the last did) already diffs these keys.
        if _covers(self._reading if self._reading is not None else self._covered, sub):
            sub.ready.set()
        self._subs.add(sub)
        self._owners[owner] += 1
        metric_families.WATCH_SUBSCRIBERS.inc()
        self._ensure_started()
        if not sub.ready.is_set():
            self._wake.set()  # read now rather than after the poll interval
        return sub

    async def wait_ready(self, sub: Subscription, timeout: float) -> None:
        """Wait until ``sub`` gets every change; BackendUnavailable if the hub cannot read."""
        try:
            async with asyncio.timeout(timeout):
                await sub.ready.wait()
        except TimeoutError:
            raise BackendUnavailable(
                f"the watch did not start within {timeout:g} s: the backend is slow to list",
                retry_after=5.0,
            ) from None
        if sub.failure:
            raise BackendUnavailable(sub.failure, retry_after=5.0)

    def replayed(self, sub: Subscription) -> None:
        """``sub``'s stream has sent its replay."""
        sub.replay_done = self._reads

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._owners[sub.owner] -= 1
            if self._owners[sub.owner] <= 0:
                del self._owners[sub.owner]
            metric_families.WATCH_SUBSCRIBERS.dec()

    def _drop(self, sub: Subscription) -> None:
        """A subscriber too slow to keep up: end its stream, free its queue."""
        log.warning("dropping a watch subscriber that fell %d events behind", self.queue_size)
        metric_families.WATCH_DROPPED.inc()
        self.unsubscribe(sub)
        sub.dropped = True
        sub.end(
            f"dropped: this stream fell {self.queue_size} events behind; "
            "reconnect (with Last-Event-ID) to get the current state"
        )

    def publish(self, events: Iterable[WatchEvent]) -> None:
        """Queue ``events`` for the ready subscribers that want them."""
        subs = [s for s in self._subs if s.ready.is_set()]
        for sub in subs:
            if sub.replay_done is not None and self._baseline > sub.replay_done:
                sub.last = None  # every event from here on is newer than the replay
                sub.terms.clear()
        for event in events:
            for sub in subs:
                if sub.dropped or not sub.wants(event) or sub.stale(event):
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._drop(sub)

    # -- the task --------------------------------------------------------------

    async def start(self) -> None:
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watch-hub")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sub in list(self._subs):
            self.unsubscribe(sub)
            sub.end("the service is shutting down")

    async def _run(self) -> None:
        while True:
            if not self._subs:
                self._seen.clear()
                self._covered = ([], [])
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            started = time.monotonic()
            timeout = self.poll_interval
            coverage = self._reading = self.coverage()
            self._reads += 1
            number = self._reads
            try:
                views = await self.read(coverage)
            except Exception as exc:
                if isinstance(exc, LeaseError):
                    log.warning("watch: cannot read the backend: %s", exc.message)
                else:
                    log.exception("watch: unexpected error reading the backend")
                self._fail_waiting()
            else:
                self.publish(self.diff(views, coverage))
                self._covered, self._baseline = coverage, number
                for sub in self._subs:
                    if _covers(coverage, sub):
                        sub.ready.set()
                timeout = min(timeout, _next_lapse(views))
            finally:
                self._reading = None
            if any(not s.ready.is_set() for s in self._subs):
                timeout = 0.0  # a new subscriber waits for the next read
            await self._wait(max(timeout, MIN_GAP))
            await asyncio.sleep(max(0.0, MIN_GAP - (time.monotonic() - started)))

    def _fail_waiting(self) -> None:
        for sub in self._subs:
            if not sub.ready.is_set():
                sub.failure = "cannot open a watch stream: the backend cannot be read"
                sub.ready.set()

    async def _wait(self, timeout: float) -> None:
        """Until a change, ``timeout`` or a subscriber that waits to be ready."""
        change = asyncio.ensure_future(self.backend.wait_for_change(timeout))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((change, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not change.done():
                change.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await change
        if change.cancelled():
            return
        exc = change.exception()
        if isinstance(exc, LeaseError):
            log.warning("watch: change notification failed: %s", exc.message)
            await asyncio.sleep(timeout)
        elif exc is not None:
            raise exc

    # -- reading and diffing ---------------------------------------------------

    def coverage(self) -> Coverage:
        """(prefixes, keys) to read: the smallest set that covers every subscriber."""
        prefixes: list[str] = []
        for p in sorted({s.prefix for s in self._subs if s.key is None}):
            if not any(p.startswith(q) for q in prefixes):
                prefixes.append(p)
        keys = sorted(
            {
                s.key
                for s in self._subs
                if s.key is not None and not any(s.key.startswith(q) for q in prefixes)
            }
        )
        return prefixes, keys

    async def read(self, coverage: Coverage | None = None) -> list[LeaseView]:
        prefixes, keys = coverage if coverage is not None else self.coverage()
        views: list[LeaseView] = []
        for prefix in prefixes:
            views.extend(await list_all_pages(self.backend, prefix))
        for key in keys:
            with contextlib.suppress(LeaseNotFound):
                views.append(await self.backend.get(key))
        return views

    def diff(self, views: list[LeaseView], coverage: Coverage | None = None) -> list[WatchEvent]:
        """Events since the last read; remembers ``views`` as the last read.

        A key the last read did not cover gives no event: nobody ready watches
        it (a subscriber gets ready only once a read covered its keys), and the
        stream that made it covered replays its state itself.
        """
        events: list[WatchEvent] = []
        now_seen: dict[str, Seen] = {}
        before = self._covered
        for view in views:
            key = view.record.key
            prev = self._seen.get(key)
            if prev is None:
                if coverage is None or _covered_key(before, key):
                    events.append(describe(view))  # created since the last read
            elif recreated(prev, view):  # deleted and created again between two reads
                events.append(deleted(prev, view.server_time, view.allowance))
                events.append(describe(view))
            else:
                events.extend(transition(prev, view))
            now_seen[key] = seen(view)
        # Rule "delete": a key both reads covered that this one did not find is gone.
        now = datetime.now(UTC)
        for key, prev in self._seen.items():
            if key not in now_seen and (coverage is None or _covered_key(coverage, key)):
                events.append(deleted(prev, now))
        self._seen = now_seen
        return events


async def list_all_pages(backend: LeaseBackend, prefix: str) -> list[LeaseView]:
    """Every lease under ``prefix``, a page at a time (``scan`` is one page of a store)."""
    out: list[LeaseView] = []
    after: str | None = None
    while True:
        page = await backend.list(prefix, after, PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].record.key


def _next_lapse(views: list[LeaseView]) -> float:
    """Seconds until the first held lease in ``views`` lapses (inf if none)."""
    left = [
        (v.record.free_at(v.allowance) - v.server_time).total_seconds() + 0.005
        for v in views
        if v.held
    ]
    return min(left, default=float("inf"))
