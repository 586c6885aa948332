"""One watch stream's side of the hub: its queue, its replay's place and de-duplication.

Example::

    sub = Subscription(key=None, prefix="jobs.", renewed=False)
    if sub.accept(event):          # newer than what was sent for event.key
        send(event)
    sub.end("the service is shutting down")   # the reader gets None next

A subscription's queue holds live events only (``QUEUE_SIZE``); the replay
of the current state is read by the stream itself, a page at a time, and
``accept`` keeps the two in version order per key (see ``watch_hub``). The
versions sent are kept in a dict only while the replay may overlap the hub's
events; a set of keys per stream for good was rejected as memory that grows
with the fleet for every open stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from leaderelection_service.events import WatchEvent

TERM_STARTS = ("acquired", "taken_over")

QUEUE_SIZE = 1024
"""Live events a subscriber may have waiting before it is dropped."""


@dataclass(eq=False)
class Subscription:
    """One open watch stream: a key or a prefix, and its queue of live events."""

    key: str | None
    prefix: str
    renewed: bool
    queue: asyncio.Queue[WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    owner: str = ""
    dropped: bool = False
    reason: str = ""
    """Why the stream ended, when the service ended it (sent as a last comment)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the hub (at once: a stream is live from ``subscribe``)."""
    failure: str = ""
    """Why the stream cannot start, when the hub says so (answers 503)."""
    last: dict[str, int] | None = field(default_factory=dict)
    """Version sent per key, while a replay may still overlap the hub's events."""
    terms: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Fencing token and value sent per key, while ``last`` is kept."""
    replay_done: int | None = None
    """The hub's read count when the replay ended."""
    upto: str | None = None
    """The last key the replay has read so far (None: none yet)."""

    def matches(self, key: str) -> bool:
        return key == self.key if self.key is not None else key.startswith(self.prefix)

    def passed(self, key: str) -> bool:
        """The replay has read past ``key``'s place: it will not read ``key`` again."""
        if self.replay_done is not None:
            return True
        return self.upto is not None and (self.key is not None or key <= self.upto)

    def wants(self, event: WatchEvent) -> bool:
        return self.matches(event.key) and (
            event.type != "renewed" or self.renewed or event.revived or event.announced
        )

    def stale(self, event: WatchEvent) -> bool:
        """Already sent this key's state at this version or a newer one."""
        return self.last is not None and event.version <= self.last.get(event.key, -1)

    def accept(self, event: WatchEvent) -> WatchEvent | None:
        """``event`` as this stream sends it now, or None (not newer than what was sent).

        While the replay may overlap the hub's events, the hub can meet a key
        for the first time after this stream's replay already sent its term
        (the key was created between two of the hub's reads): the hub calls it
        the start of a term, but for this stream the term goes on, so it is sent
        as a ``renewed`` event, to those it is for (rule "value").
        """
        if self.stale(event):
            return None
        if self.last is not None:
            token, value = event.lease.get("fencing_token"), event.lease.get("value")
            sent = self.terms.get(event.key)
            if sent is not None and event.type in TERM_STARTS and token == sent[0]:
                event = replace(
                    event, type="renewed", announced=event.announced and value != sent[1]
                )
                if not self.wants(event):
                    self.last[event.key] = event.version
                    return None
            self.last[event.key] = event.version
            self.terms[event.key] = (token, value)
        return event

    async def get(self) -> WatchEvent | None:
        """The next event, or None once the stream is over (dropped or closed)."""
        return await self.queue.get()

    def drain(self) -> list[WatchEvent | None]:
        """What is queued now, without waiting (a None ends the stream)."""
        out: list[WatchEvent | None] = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def end(self, reason: str = "") -> None:
        """End the stream: what is queued is dropped, the reader gets None next."""
        self.reason = self.reason or reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        self.ready.set()


class TooManySubscribers(Exception):
    pass


class TooManyForOwner(TooManySubscribers):
    """The caller's own cap, not the process's."""
