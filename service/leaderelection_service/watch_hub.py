"""The watch hub: one task per process turns backend changes into lease events.

Example::

    hub = WatchHub(backend, poll_interval=1.0)
    sub = hub.subscribe(prefix="jobs.", owner="token #2 (read)")   # live at once
    page = await hub.read_page(sub, lambda: backend.list("jobs.", None, PAGE))
    ...                            # send the page (the replay), read the next one ...
    hub.replayed(sub)
    event = await sub.get()        # WatchEvent(type="acquired", key="jobs.a", ...)
    hub.unsubscribe(sub)
    await hub.close()

**What the hub reads.** It keeps the last state it read of every key a stream
may have been sent (``_seen``) and reads again only what may have changed:

1. the keys the backend says were written: ``backend.wait_for_change``
   returns them (PostgreSQL: each ``NOTIFY`` carries the key, from any
   replica; file, GCS and memory: the keys this process wrote), one ``get``
   per key, ``KEY_BATCH`` at a time;
2. the keys whose held lease lapses now (expiry writes nothing; ``lapses``);
3. *everything the streams have read* when the backend cannot say which keys
   changed (``wait_for_change`` returned None: LISTEN (re)connected, more
   than ``change_signal.MAX_KEYS`` writes piled up, a backend that does not
   tell keys, or the hub's last read failed), and, on a backend without
   change notification (file, GCS, memory: other processes' writes are not
   told), every ``poll_interval``: each stream's prefix up to the key its
   replay has read, all of it once replayed, a page at a time.

So a change costs one ``get`` per changed key, not a listing of every watched
key, and a new stream is live at once: its replay (its own pages) starts with
the first page instead of after the hub has read the whole prefix. Re-reading
every watched prefix on every change (the earlier design) was rejected: over
a million keys one wake-up was a full listing, and the first one did not end
within ``READY_TIMEOUT``.

**The replay goes through the hub, not through the queue.** A stream reads
its pages with ``read_page``; each page is compared with ``_seen`` like any
read of the hub, and its keys join ``_seen``. The queue holds live changes
only (``QUEUE_SIZE``); the replay and the queue are de-duplicated by version
per key (``Subscription.accept``) while they may overlap.

**Why no change is lost.** Every read (the hub's and each replay page) runs
under one lock and is compared with ``_seen`` as soon as it returns, so the
reads of a key are ordered and its state only goes forwards (an older
revision is ignored). Take a change C to key k and a stream S that watches k
(subscribed before C, else S's replay, read after it subscribed, shows C):

- if C committed before S's replay read k's place, the replay shows C;
- otherwise S's replay has passed k's place (``Subscription.passed``) and k
  is in ``_seen`` (the page had it) or k is new. The backend tells of C:
  with k (the hub reads k after C committed: a transition from ``_seen``,
  or for a key not in ``_seen``, its state to every stream that has passed
  its place, S among them), or as "unknown" (the hub reads every passed
  range, k's among them, after C committed: the same), or, for a write by
  another process to a file or GCS store, not at all, and the next poll
  reads every passed range. An expiry is read at its deadline. A signal
  fired while the hub reads is kept for its next wait (``Changes``);
  PostgreSQL notifications are delivered after commit, and a LISTEN that
  was not connected (before its first connection, or broken) says
  "unknown" once it is. A read that fails makes the next one read
  everything the streams have read.

A key S has not reached is not sent to S by the hub (S reads it itself, and
a million keys would overflow its queue): only streams that have passed a
key's place get a key the hub had not seen.

With no subscriber the task sleeps and reads nothing. Backend errors are
logged and retried after ``poll_interval``; streams stay open (a replay
page that cannot be read answers 503). Cancelling ``close()`` ends every subscriber's stream.

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
from collections.abc import Awaitable, Callable, Iterable
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
from leaderelection_service.lapses import Lapses
from leaderelection_service.lease_errors import BackendUnavailable, LeaseError, LeaseNotFound
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend
from leaderelection_service.subscription import (
    QUEUE_SIZE,
    Subscription,
    TooManyForOwner,
    TooManySubscribers,
)
from leaderelection_service.watch_coverage import Coverage, contains, coverage, read_ranges

log = logging.getLogger("leaderelection.watch")

MAX_SUBSCRIBERS = 1024
"""Open watch streams per process; more are refused with 503."""
PER_OWNER = 256
"""Default open watch streams per token (or client address): a quarter of the process's."""
PAGE = 1000
KEY_BATCH = 64
"""Changed keys read at once (concurrent ``get`` calls) under the read lock."""
MIN_GAP = 0.02
"""Seconds between two reads at least, so a burst of writes is read once."""


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
        self._seen_at: dict[str, int] = {}
        """The read that last found each key in ``_seen``."""
        self._lapses = Lapses()
        self._lock = asyncio.Lock()
        """Held by every read, from its start until ``_seen`` has absorbed it."""
        self._reads = 0
        """Reads begun so far."""
        self._told: set[str] | None = set()
        """Keys to read next; None: everything the streams have read. A new
        stream reads its replay after subscribing, so what changed before is in
        it: the hub starts (and restarts after idling) with nothing to read."""
        self._polled = float("-inf")
        self.full_reads = 0
        """Times the hub read everything the streams had read (no keys told)."""
        self._prune = False
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
        """Start receiving events for ``key`` (or every key under ``prefix``), at once.

        The stream then reads its replay with ``read_page`` and calls ``replayed``.
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
        sub.ready.set()  # every change from now on is read by the hub or by the replay
        self._subs.add(sub)
        self._owners[owner] += 1
        metric_families.WATCH_SUBSCRIBERS.inc()
        self._ensure_started()
        self._wake.set()
        return sub

    async def wait_ready(self, sub: Subscription, timeout: float) -> None:
        """Kept for callers: a subscription is live from ``subscribe`` on."""
        if sub.failure:
            raise BackendUnavailable(sub.failure, retry_after=5.0)

    async def read_page(
        self, sub: Subscription, fetch: Callable[[], Awaitable[list[LeaseView]]]
    ) -> list[LeaseView]:
        """One page of ``sub``'s replay, read in turn with the hub's reads."""
        async with self._lock:
            number = self._begin()
            views = await fetch()
            self._absorb(views, number, reader=sub)
            if sub.key is not None:
                sub.upto = sub.key
            elif views:
                sub.upto = views[-1].record.key
        return views

    def replayed(self, sub: Subscription) -> None:
        """``sub``'s stream has sent its replay."""
        sub.replay_done = self._reads

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._prune = True
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

    def publish(
        self,
        events: Iterable[WatchEvent],
        number: int | None = None,
        *,
        first_seen: bool = False,
        reader: Subscription | None = None,
    ) -> None:
        """Queue ``events`` (from read ``number``) for the subscribers that want them.

        ``first_seen``: keys the hub had not seen, only for the streams whose
        replay has passed their place (the others read them themselves).
        """
        number = self._reads if number is None else number
        subs = [s for s in self._subs if s.ready.is_set() and s is not reader]
        for sub in subs:
            if sub.replay_done is not None and number > sub.replay_done:
                sub.last = None  # every event from here on is newer than the replay
                sub.terms.clear()
        for event in events:
            for sub in subs:
                if sub.dropped or not sub.wants(event) or sub.stale(event):
                    continue
                if first_seen and not sub.passed(event.key):
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
        polling = not self.backend.capabilities.change_notification
        while True:
            if not self._subs:
                self._forget()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            started = time.monotonic()
            if self._prune:
                self._prune_unwatched()
            told, self._told = self._told, set()
            timeout = self.poll_interval
            try:
                if told is None:
                    await self.read_watched()
                else:
                    await self.read_keys(told | self._lapses.due(time.monotonic()))
            except Exception as exc:
                if isinstance(exc, LeaseError):
                    log.warning("watch: cannot read the backend: %s", exc.message)
                else:
                    log.exception("watch: unexpected error reading the backend")
                self._told = None  # read everything the streams have read, next time
            else:
                timeout = min(timeout, self._lapses.next() - time.monotonic())
            self._note(await self._wait(max(timeout, MIN_GAP)))
            if polling and time.monotonic() - self._polled >= self.poll_interval:
                self._told = None  # other processes' writes are not told
            await asyncio.sleep(max(0.0, MIN_GAP - (time.monotonic() - started)))

    def _note(self, changed: frozenset[str] | None) -> None:
        if changed is None:
            self._told = None
        elif self._told is not None:
            self._told |= changed

    def _forget(self) -> None:
        self._seen.clear()
        self._seen_at.clear()
        self._lapses.clear()
        self._told = set()
        self._prune = False

    def _prune_unwatched(self) -> None:
        self._prune = False
        cover = self.coverage()
        self._seen = {k: s for k, s in self._seen.items() if contains(cover, k)}
        self._seen_at = {k: n for k, n in self._seen_at.items() if k in self._seen}
        self._lapses.keep(self._seen)

    async def _wait(self, timeout: float) -> frozenset[str] | None:
        """Until a change, ``timeout`` or a wake-up: the keys changed (None: unknown)."""
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
            return frozenset()
        exc = change.exception()
        if isinstance(exc, LeaseError):
            log.warning("watch: change notification failed: %s", exc.message)
            await asyncio.sleep(timeout)
            return None
        if exc is not None:
            raise exc
        result = change.result()
        # A backend that does not say which keys changed returns None.
        return None if result is None else frozenset(result)

    # -- reading and diffing ---------------------------------------------------

    def coverage(self) -> Coverage:
        """(prefixes, keys): the smallest set that covers every subscriber."""
        return coverage(self._subs)

    async def read_watched(self) -> None:
        """Read everything the streams have read (the backend did not say what changed)."""
        self._polled = time.monotonic()
        self.full_reads += 1
        self._lapses.due(self._polled)  # the ranges cover them
        ranges, keys = read_ranges(self._subs)
        for prefix, upto in ranges:
            await self._read_range(prefix, upto)
        await self.read_keys(keys)

    async def _read_range(self, prefix: str, upto: str | None) -> None:
        """Read ``prefix`` up to ``upto``; a key read before that is not found is gone."""
        began = self._reads + 1
        found: set[str] = set()
        after: str | None = None
        while True:
            async with self._lock:
                number = self._begin()
                page = await self.backend.list(prefix, after, PAGE)
                views = [v for v in page if upto is None or v.record.key <= upto]
                found.update(v.record.key for v in views)
                self._absorb(views, number)
            if len(page) < PAGE or (upto is not None and page[-1].record.key >= upto):
                break
            after = page[-1].record.key
        self._gone(
            [
                k
                for k, n in self._seen_at.items()
                if n < began
                and k.startswith(prefix)
                and (upto is None or k <= upto)
                and k not in found
            ],
            self._reads,
        )

    async def read_keys(self, keys: Iterable[str]) -> None:
        """Read ``keys`` (those a subscriber watches), ``KEY_BATCH`` at a time."""
        cover = self.coverage()
        wanted = sorted(k for k in keys if contains(cover, k))
        for i in range(0, len(wanted), KEY_BATCH):
            chunk = wanted[i : i + KEY_BATCH]
            async with self._lock:
                number = self._begin()
                got = await asyncio.gather(*(self._get(k) for k in chunk))
                self._absorb([v for v in got if v is not None], number)
                self._gone([k for k, v in zip(chunk, got, strict=True) if v is None], number)

    async def _get(self, key: str) -> LeaseView | None:
        try:
            return await self.backend.get(key)
        except LeaseNotFound:
            return None

    def _begin(self) -> int:
        self._reads += 1
        return self._reads

    def _absorb(
        self, views: list[LeaseView], number: int, reader: Subscription | None = None
    ) -> None:
        """Compare a read with ``_seen``, remember it, publish what changed."""
        events: list[WatchEvent] = []
        first: list[WatchEvent] = []
        now = time.monotonic()
        for view in views:
            key = view.record.key
            prev = self._seen.get(key)
            if prev is None:
                first.append(describe(view))
            elif recreated(prev, view):  # deleted and created again between two reads
                events.append(deleted(prev, view.server_time, view.allowance))
                events.append(describe(view))
            elif view.record.revision < prev.record.revision:
                continue  # an older read than the one remembered: never go backwards
            else:
                events.extend(transition(prev, view))
            self._seen[key] = seen(view)
            self._seen_at[key] = number
            self._lapses.note(key, view, now)
        self.publish(events, number)
        if first:
            self.publish(first, number, first_seen=True, reader=reader)

    def _gone(self, keys: Iterable[str], number: int) -> None:
        """Rule "delete": keys the hub had read that a read no longer finds."""
        now = datetime.now(UTC)
        events: list[WatchEvent] = []
        for key in keys:
            prev = self._seen.pop(key, None)
            if prev is not None:
                self._seen_at.pop(key, None)
                self._lapses.forget(key)
                events.append(deleted(prev, now))
        self.publish(events, number)
