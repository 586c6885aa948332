"""The watch hub: one task per process turns backend changes into lease events.

Example::

    hub = WatchHub(backend, poll_interval=1.0)
    await hub.start()
    sub = hub.subscribe(prefix="jobs.")
    event = await sub.get()        # WatchEvent(type="acquired", key="jobs.a", ...)
    hub.unsubscribe(sub)
    await hub.close()

How it works:

1. The task waits on ``backend.wait_for_change(timeout)``: PostgreSQL returns
   on ``LISTEN/NOTIFY`` from any replica; file and GCS (``CasLeases``) return
   at once for this process's own writes and otherwise after ``timeout``,
   which is ``poll_interval`` or less when a held lease is about to lapse.
2. It re-reads what subscribers watch (a ``get`` per watched key, a paged
   ``list`` per watched prefix) and diffs each record against the last one it
   saw (``events.transition``).
3. Each event goes to the matching subscribers' bounded queues. A subscriber
   whose queue is full is dropped (its stream ends; the client reconnects and
   the replay brings it up to date), so a slow reader never grows memory.

With no subscriber the task sleeps and reads nothing. Backend errors are
logged and retried after ``poll_interval``; streams stay open.
Cancelling ``close()`` ends every subscriber's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from leaderelection_service import metrics
from leaderelection_service.errors import LeaseError, LeaseNotFound
from leaderelection_service.events import Seen, WatchEvent, describe, seen, transition
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend

log = logging.getLogger("leaderelection.watch")

QUEUE_SIZE = 1024
"""Events a subscriber may have waiting before it is dropped."""
MAX_SUBSCRIBERS = 1024
"""Open watch streams per process; more are refused with 503."""
PAGE = 1000
MIN_GAP = 0.02
"""Seconds between two reads at least, so a burst of writes is read once."""


@dataclass(eq=False)
class Subscription:
    """One open watch stream: a key or a prefix, and its queue."""

    key: str | None
    prefix: str
    renewed: bool
    queue: asyncio.Queue[WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False

    def matches(self, key: str) -> bool:
        return key == self.key if self.key is not None else key.startswith(self.prefix)

    def wants(self, event: WatchEvent) -> bool:
        return self.matches(event.key) and (
            event.type != "renewed" or self.renewed or event.revived
        )

    async def get(self) -> WatchEvent | None:
        """The next event, or None once the stream is over (dropped or closed)."""
        return await self.queue.get()

    def end(self) -> None:
        """End the stream: what is queued is dropped, the reader gets None next."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class TooManySubscribers(Exception):
    pass


class WatchHub:
    def __init__(
        self, backend: LeaseBackend, *, poll_interval: float = 1.0, queue_size: int = QUEUE_SIZE
    ) -> None:
        self.backend = backend
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._seen: dict[str, Seen] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- subscribers -----------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(
        self, *, key: str | None = None, prefix: str = "", renewed: bool = False
    ) -> Subscription:
        """Start receiving events for ``key`` (or every key under ``prefix``)."""
        if self._closed:
            raise TooManySubscribers("the service is shutting down")
        if len(self._subs) >= MAX_SUBSCRIBERS:
            raise TooManySubscribers(f"more than {MAX_SUBSCRIBERS} open watch streams")
        sub = Subscription(key, prefix, renewed, asyncio.Queue(self.queue_size))
        self._subs.add(sub)
        metrics.WATCH_SUBSCRIBERS.inc()
        self._ensure_started()
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            metrics.WATCH_SUBSCRIBERS.dec()

    def _drop(self, sub: Subscription) -> None:
        """A subscriber too slow to keep up: end its stream, free its queue."""
        log.warning("dropping a watch subscriber that fell %d events behind", self.queue_size)
        metrics.WATCH_DROPPED.inc()
        self.unsubscribe(sub)
        sub.dropped = True
        sub.end()

    def publish(self, events: Iterable[WatchEvent]) -> None:
        for event in events:
            for sub in list(self._subs):
                if not sub.wants(event):
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
            sub.end()

    async def _run(self) -> None:
        while True:
            if not self._subs:
                self._seen.clear()
                self._wake.clear()
                await self._wake.wait()
                continue
            started = time.monotonic()
            timeout = self.poll_interval
            try:
                views = await self.read()
            except LeaseError as exc:
                log.warning("watch: cannot read the backend: %s", exc.message)
            except Exception:
                log.exception("watch: unexpected error reading the backend")
            else:
                self.publish(self.diff(views))
                timeout = min(timeout, _next_lapse(views))
            await self._wait(max(timeout, MIN_GAP))
            await asyncio.sleep(max(0.0, MIN_GAP - (time.monotonic() - started)))

    async def _wait(self, timeout: float) -> None:
        try:
            await self.backend.wait_for_change(timeout)
        except LeaseError as exc:
            log.warning("watch: change notification failed: %s", exc.message)
            await asyncio.sleep(timeout)

    # -- reading and diffing ---------------------------------------------------

    def coverage(self) -> tuple[list[str], list[str]]:
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

    async def read(self) -> list[LeaseView]:
        prefixes, keys = self.coverage()
        views: list[LeaseView] = []
        for prefix in prefixes:
            views.extend(await scan(self.backend, prefix))
        for key in keys:
            with contextlib.suppress(LeaseNotFound):
                views.append(await self.backend.get(key))
        return views

    def diff(self, views: list[LeaseView]) -> list[WatchEvent]:
        """Events since the last read; remembers ``views`` as the last read."""
        events: list[WatchEvent] = []
        now_seen: dict[str, Seen] = {}
        for view in views:
            key = view.record.key
            prev = self._seen.get(key)
            if prev is None:
                # Newly covered or newly created: its current state. A subscriber
                # that already replayed this version drops it.
                events.append(describe(view))
            else:
                events.extend(transition(prev, view))
            now_seen[key] = seen(view)
        self._seen = now_seen
        return events


async def scan(backend: LeaseBackend, prefix: str) -> list[LeaseView]:
    """Every lease under ``prefix``, a page at a time."""
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
