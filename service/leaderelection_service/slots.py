"""The slots of a semaphore key: a key with ``limit`` N keeps up to N holders at once.

Example::

    rec = LeaseRecord(..., limit=3, slots=(Slot("a", 4, ...), Slot("b", 5, ...)))
    held_slots(rec, now)             # the slots held on ``now``
    public_fields(rec, now)          # {"limit": 3, "holders": [...]} for the answer

A key acquired with limit 1 keeps the plain record (``slots`` empty) and answers
exactly as before. A key with a larger limit keeps every slot in the one record
of the key (one compare-and-set decides for all of them); the record's own
holder fields repeat one slot: the one the last write concerned, or, for a
lookup, the most recently granted slot still held (``for_lookup``).

Rejected: a record per slot (``key#0``, ``key#1`` …). Counting the holders
would then read N records and write one, and two candidates taking the last
two free places at once could each see N-1 holders: no store here offers a
compare-and-set across records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leaderelection_service.records import LeaseRecord, LeaseState


@dataclass(frozen=True, slots=True)
class Slot:
    """One holder's place in a semaphore key: its own term, expiry and fencing token."""

    holder: str
    fencing_token: int
    ttl: float
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    released: bool = False
    revoked: bool = False
    value: str | None = None
    announced: bool = False

    def free_at(self, allowance: float = 0.0) -> datetime:
        if self.released:
            return self.expires_at
        return self.expires_at + timedelta(seconds=allowance)

    def held_at(self, now: datetime, allowance: float = 0.0) -> bool:
        return not self.released and now < self.free_at(allowance)

    def state_at(self, now: datetime, allowance: float = 0.0) -> LeaseState:
        if self.released:
            return "revoked" if self.revoked else "released"
        return "held" if now < self.free_at(allowance) else "expired"

    def to_public(self, now: datetime, allowance: float = 0.0) -> dict[str, Any]:
        from leaderelection_service.records import rfc3339

        return {
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "ttl": self.ttl,
            "acquired_at": rfc3339(self.acquired_at),
            "renewed_at": rfc3339(self.renewed_at),
            "expires_at": rfc3339(self.expires_at),
            "state": self.state_at(now, allowance),
            "value": self.value,
        }

    def to_storage(self) -> dict[str, Any]:
        from leaderelection_service.records import rfc3339

        return {
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "ttl": self.ttl,
            "acquired_at": rfc3339(self.acquired_at),
            "renewed_at": rfc3339(self.renewed_at),
            "expires_at": rfc3339(self.expires_at),
            "released": self.released,
            "revoked": self.revoked,
            "value": self.value,
            "announced": self.announced,
        }

    @classmethod
    def from_storage(cls, d: dict[str, Any]) -> Slot:
        from leaderelection_service.records import parse_time

        return cls(
            holder=d["holder"],
            fencing_token=int(d["fencing_token"]),
            ttl=float(d["ttl"]),
            acquired_at=parse_time(d["acquired_at"]),
            renewed_at=parse_time(d["renewed_at"]),
            expires_at=parse_time(d["expires_at"]),
            released=bool(d.get("released", False)),
            revoked=bool(d.get("revoked", False)),
            value=d.get("value"),
            announced=bool(d.get("announced", False)),
        )


def slot_of(rec: LeaseRecord) -> Slot:
    """The slot a record's own holder fields describe."""
    return Slot(
        holder=rec.holder,
        fencing_token=rec.fencing_token,
        ttl=rec.ttl,
        acquired_at=rec.acquired_at,
        renewed_at=rec.renewed_at,
        expires_at=rec.expires_at,
        released=rec.released,
        revoked=rec.revoked,
        value=rec.value,
        announced=rec.announced,
    )


def slots_of(rec: LeaseRecord) -> tuple[Slot, ...]:
    """Every slot of the key: a plain record is one slot."""
    return tuple(rec.slots) if rec.slots else (slot_of(rec),)


def is_semaphore(rec: LeaseRecord | None) -> bool:
    return rec is not None and bool(rec.slots)


def held_slots(rec: LeaseRecord, now: datetime, allowance: float = 0.0) -> list[Slot]:
    return [s for s in slots_of(rec) if s.held_at(now, allowance)]


def focused(rec: LeaseRecord, slot: Slot, **changes: Any) -> LeaseRecord:
    """``rec`` with its own holder fields describing ``slot`` (and ``changes`` applied)."""
    return replace(
        rec,
        holder=slot.holder,
        fencing_token=slot.fencing_token,
        ttl=slot.ttl,
        acquired_at=slot.acquired_at,
        renewed_at=slot.renewed_at,
        expires_at=slot.expires_at,
        released=slot.released,
        revoked=slot.revoked,
        value=slot.value,
        announced=slot.announced,
        **changes,
    )


def for_lookup(rec: LeaseRecord, now: datetime, allowance: float = 0.0) -> LeaseRecord:
    """What a lookup or a listing shows: the most recently granted slot still held.

    With none held, the record as the last write left it.
    """
    if not rec.slots:
        return rec
    live = held_slots(rec, now, allowance)
    if not live:
        return rec
    latest = max(live, key=lambda s: s.fencing_token)
    return rec if latest.fencing_token == rec.fencing_token else focused(rec, latest)


def public_fields(rec: LeaseRecord, now: datetime, allowance: float = 0.0) -> dict[str, Any]:
    """``limit`` and ``holders`` (the slots held on ``now``, oldest grant first)."""
    live = sorted(held_slots(rec, now, allowance), key=lambda s: s.fencing_token)
    return {"limit": rec.limit, "holders": [s.to_public(now, allowance) for s in live]}
