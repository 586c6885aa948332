"""Lease events: what changed between two reads of a key's record.

Example::

    describe(view)              # WatchEvent(type="acquired", key="cron", version=2, ...)
    transition(seen(old), new)  # [WatchEvent(type="released", ...)]

Event types (the SSE ``event:`` names):

| type         | meaning                                                             |
|--------------|---------------------------------------------------------------------|
| ``acquired`` | a term began on a free lease (new key, after a release, or the same |
|              | holder again after its own lapse)                                   |
| ``taken_over`` | a term began for another holder after the last term lapsed        |
| ``renewed``  | the same term was extended (sent only when asked for, except when a |
|              | lapsed lease is renewed by its holder and so is held again, and     |
|              | when the renewal changed the value with ``announce``)               |
| ``released`` | the holder released it                                              |
| ``expired``  | its time ran out (no write: seen on the deciding clock)             |
| ``revoked``  | an operator ended the term (``POST …/revoke``)                       |
| ``deleted``  | an operator deleted the key (``DELETE …``); ``lease`` is its last    |
|              | record, version ``2 * (revision + 1)``                               |
| ``successor_named`` | an operator named a successor of the held term (``POST …/transfer`` |
|              | with ``to`` alone): its holder is to step down; ``lease.successor``  |
| ``transferred`` | the term ended handing the lease to ``lease.successor`` (the      |
|              | holder's transfer, or its release after ``successor_named``): only   |
|              | the successor may acquire it for one ttl                             |

The kind of a term's start and end is read from the record and its history,
never from when a replica happened to look, so every replica names the same
change the same way.

**Version.** Every event carries ``version``, which strictly increases over a
key's events: ``2 * revision`` for the state a write left and
``2 * revision + 1`` for that same record seen lapsed (expiry writes nothing,
so it sorts just after the write it outlived). The SSE ``id`` is
``KEY:VERSION``; a client that resumes with ``Last-Event-ID`` is not sent that
key's state again unless its version is newer.

**Values.** A renew (or the holder's own acquire) that changes the lease's
``value`` is a ``renewed`` event carrying the new value: sent to the
``?renewed=true`` watchers, as every renewal is, and to every watcher when the
write asked for it to be announced (``announce: true``; the record keeps that
flag with the value, so every replica decides alike). The value is compared
with the one the reader last saw: a change made and undone between two reads
is folded away, like any other.

**Coalescing.** Changes that fall between two reads are folded: the end of the
last term the reader saw is reported (from the history, ``released`` or
``expired``) and then the current term, so a watcher always sees every term end
it saw begin. Terms that began and ended entirely between two reads are not
reported; the fencing token's gap shows how many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from leaderelection_service.records import (
    HISTORY_LIMIT,
    LeaseRecord,
    LeaseState,
    LeaseView,
    Term,
)
from leaderelection_service.slots import slots_of

EventType = Literal[
    "acquired",
    "taken_over",
    "renewed",
    "released",
    "expired",
    "revoked",
    "deleted",
    "successor_named",
    "transferred",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
FREED_BY = ("released", "revoked", "transferred")
"""How a term ends that frees the lease at once (not a lapse)."""


def end_type(state: State, record: LeaseRecord) -> EventType:
    """The event of a term that ended in ``state`` (``released`` or ``revoked``)."""
    if state == "released" and record.successor is not None:
        return "transferred"
    return "revoked" if state == "revoked" else "released"


State = LeaseState


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    version: int
    revision: int
    lease: dict[str, Any]
    replay: bool = False
    """True for the current state sent when a stream (re)connects."""
    revived: bool = False
    """A ``renewed`` that made a lapsed lease held again (sent to every subscriber)."""
    announced: bool = False
    """A ``renewed`` that changed the value with ``announce`` (sent to every subscriber)."""

    @property
    def id(self) -> str:
        return f"{self.key}:{self.version}"

    def data(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "key": self.key,
            "version": self.version,
            "revision": self.revision,
            "replay": self.replay,
            "lease": self.lease,
        }

    def json(self) -> str:
        return json.dumps(self.data(), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Seen:
    """What the hub last read for a key."""

    record: LeaseRecord
    lapsed: bool
    """It was read lapsed (so ``expired`` was already reported for this revision)."""


def state(view: LeaseView) -> State:
    return view.state  # decided by the record on the deciding clock


def version(view: LeaseView) -> int:
    return 2 * view.record.revision + (1 if state(view) == "expired" else 0)


def seen(view: LeaseView) -> Seen:
    return Seen(view.record, state(view) == "expired")


def _previous_term(record: LeaseRecord) -> Term | None:
    earlier = [t for t in record.history if t.fencing_token < record.fencing_token]
    return earlier[-1] if earlier else None


def start_type(record: LeaseRecord) -> EventType:
    """How the record's current term began: ``taken_over`` or ``acquired``."""
    if record.slots:  # a semaphore's slot: a place was free, whoever had it before
        return "acquired"
    before = _previous_term(record)
    freed = before is not None and before.ended_by in FREED_BY
    if before is not None and not freed and before.holder != record.holder:
        return "taken_over"
    return "acquired"


def _event(
    type_: EventType,
    view: LeaseView,
    ver: int,
    *,
    replay: bool = False,
    revived: bool = False,
    announced: bool = False,
) -> WatchEvent:
    rec = view.record
    lease = view.to_public()
    return WatchEvent(type_, rec.key, ver, rec.revision, lease, replay, revived, announced)


def describe(view: LeaseView, *, replay: bool = False) -> WatchEvent:
    """The record's current state as one event (a stream's replay, a new key)."""
    st = state(view)
    kind: EventType = start_type(view.record) if st == "held" else st
    if st in ("released", "revoked"):
        kind = end_type(st, view.record)
    # ``announced`` travels with a term's start too: a stream that had already
    # sent this term (its replay) reads such an event as the value's renewal.
    return _event(kind, view, version(view), replay=replay, announced=view.record.announced)


def transition(prev: Seen, view: LeaseView) -> list[WatchEvent]:
    """The events between ``prev`` and ``view`` of the same key, oldest first."""
    rec, old = view.record, prev.record
    st = state(view)
    if rec.revision == old.revision:
        if st == "expired" and not prev.lapsed:
            return [_event("expired", view, version(view))]
        return []
    if rec.slots or old.slots:
        if rec.fencing_token <= max((s.fencing_token for s in slots_of(old)), default=0):
            return _slot_change(prev, view)
    elif rec.fencing_token == old.fencing_token:  # the same term, written again
        if st in ("released", "revoked"):
            return [] if old.released else [_event(end_type(st, rec), view, version(view))]
        if st == "held" and rec.successor is not None and rec.successor != old.successor:
            return [_event("successor_named", view, version(view), revived=prev.lapsed)]
        if st == "held":
            told = rec.announced and rec.value != old.value  # rule "value" (above)
            return [_event("renewed", view, version(view), revived=prev.lapsed, announced=told)]
        return [] if prev.lapsed else [_event("expired", view, version(view))]
    # A new term (or several): first the end of the one we saw, then the current one
    # (a semaphore's new slot ends no other: its event is the new slot's alone).
    out: list[WatchEvent] = []
    if not old.released and not prev.lapsed and not (rec.slots or old.slots):
        out.append(_term_end(old, view))
    kind = start_type(rec)
    if st == "held":
        out.append(_event(kind, view, version(view)))
    elif st in ("released", "revoked"):
        # Began and was released (or revoked) between two reads: the start sorts just before.
        out.append(_event(kind, view, version(view) - 1))
        out.append(_event(end_type(st, rec), view, version(view)))
    else:
        out.append(_event(kind, view, 2 * rec.revision))
        out.append(_event("expired", view, version(view)))
    return out


def deleted(prev: Seen, server_time: datetime, allowance: float = 0.0) -> WatchEvent:
    """The key of ``prev`` is gone (rule "delete"): its last record, at the version
    just above every version it had (the token floor keeps a re-created key above)."""
    old = prev.record
    lease = old.to_public(server_time, allowance)
    lease["held"] = False
    if lease["state"] == "held":  # its end was not read; only a free lease is deleted
        lapsed = server_time >= old.free_at(allowance)
        lease["state"] = "expired" if lapsed else "released"
    return WatchEvent("deleted", old.key, 2 * (old.revision + 1), old.revision, lease)


def recreated(prev: Seen, view: LeaseView) -> bool:
    """Whether ``view`` is a record created after ``prev``'s key was deleted.

    A re-created key's first token is above the floor, so above ``prev``'s
    token + 1; a key that went on keeps every term since in its history,
    unless more terms than the history holds passed (then the change is
    folded as any other).
    """
    first = view.record.history[0].fencing_token if view.record.history else 0
    return first > prev.record.fencing_token + 1 and len(view.record.history) < HISTORY_LIMIT


def _slot_change(prev: Seen, view: LeaseView) -> list[WatchEvent]:
    """A semaphore key's write about a slot that already existed: the event of that slot.

    Each event describes the slot the write concerned (its ``lease`` lists every
    holder); a slot that lapses while another is written is seen in ``holders``.
    """
    rec = view.record
    st = state(view)
    mine = next((s for s in slots_of(prev.record) if s.fencing_token == rec.fencing_token), None)
    if st in ("released", "revoked"):
        return [] if mine is not None and mine.released else [_event(st, view, version(view))]
    if st == "held":
        told = rec.announced and (mine is None or rec.value != mine.value)
        return [_event("renewed", view, version(view), revived=prev.lapsed, announced=told)]
    return [_event("expired", view, version(view))]


def _term_end(old: LeaseRecord, view: LeaseView) -> WatchEvent:
    """The end of ``old``'s term, as the newer record's history tells it."""
    ended = next((t for t in view.record.history if t.fencing_token == old.fencing_token), None)
    kind: EventType
    if ended is not None and ended.ended_by == "transferred" and ended.ended_at is not None:
        final = old.released_at(ended.ended_at, successor=old.successor)
        kind = "transferred"
    elif ended is not None and ended.ended_by == "released" and ended.ended_at is not None:
        final = old.released_at(ended.ended_at)
        kind = "released"
    elif ended is not None and ended.ended_by == "revoked" and ended.ended_at is not None:
        final = old.released_at(ended.ended_at, revoked=True)
        kind = "revoked"
    else:
        final = old
        kind = "expired"
    lease = final.to_public(view.server_time, view.allowance)
    lease["held"] = False  # a newer term exists, whatever the clocks say
    lease["state"] = "released" if kind == "transferred" else kind
    return WatchEvent(kind, old.key, 2 * old.revision + 1, old.revision, lease)
