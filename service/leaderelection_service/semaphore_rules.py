"""The lease rules for a semaphore key (limit N > 1), written once for every backend.

Example::

    rec = decide_acquire(None, key="jobs", holder="a", ttl=10, now=now, limit=3)
    rec.limit, rec.fencing_token       # 3, 1
    rec = decide_acquire(rec, key="jobs", holder="b", ttl=10, now=now, limit=3)
    rec.fencing_token                  # 2: tokens increase across every slot's grants

The rules (docs/contract.md, "Semaphores"):

1. acquire is granted while fewer than ``limit`` slots are held (released and
   lapsed slots do not count); each grant is a new slot term with the key's
   next fencing token. A holder that already holds a slot gets it extended
   (idempotent, same token). Otherwise ``LeaseHeld`` with every holder.
2. one limit per key: while any slot is held, an acquire with another limit
   is refused ``LimitMismatch``, except with an admin token, which sets the
   new limit. Lowering it ends nobody's slot: the holders keep their slots
   until they release or lapse, and new grants wait until fewer than the new
   limit are held. A key with no slot held takes the limit of the next acquire.
3. renew and release work per slot, by holder and fencing token, as for a
   plain lease; a renew past the slot's expiry is granted while its place was
   not given to another and fewer than ``limit`` other slots are held.
4. revoke ends every slot not yet released.

A record ends up plain (``slots`` empty) when its limit is 1 and one slot is
left, so a key returned to limit 1 answers as a plain lease again.

These are pure functions of (record, request, now), like ``lease_rules``;
``CasLeases`` runs them over record stores and the SQL backend over a
read and a compare-and-set on the row's revision. Rejected: widening
``lease_rules.decide_*`` to take slots, since a plain lease would then pay
for a semaphore's bookkeeping on every renewal, and the limit-1 rules (which
the SQL statements state too) would no longer read as they are written in
docs/contract.md.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from leaderelection_service.records import HISTORY_LIMIT, LeaseRecord, LeaseView, Term
from leaderelection_service.refusals import (
    acquire_refusal,
    held,
    limit_mismatch,
    lost,
    never_acquired,
)
from leaderelection_service.slots import Slot, focused, for_lookup, slots_of

LIMIT_MAX = 1000
"""The largest ``limit`` an acquire may ask for."""


def _ended(history: list[Term], slot: Slot) -> None:
    """Close ``slot``'s term in ``history`` (in place), if it is still open there."""
    for i, t in enumerate(history):
        if t.fencing_token == slot.fencing_token and t.ended_at is None:
            if slot.released:
                by = "revoked" if slot.revoked else "released"
                history[i] = replace(t, ended_at=slot.expires_at, ended_by=by, value=slot.value)
            else:
                history[i] = replace(
                    t, ended_at=slot.expires_at, ended_by="expired", value=slot.value
                )


def _settle(
    base: LeaseRecord,
    slot: Slot,
    slots: list[Slot],
    history: list[Term],
    *,
    limit: int,
    transitions: int,
) -> LeaseRecord:
    """The next record: focused on ``slot``, plain again when one slot of limit 1 is left."""
    rec = focused(
        base,
        slot,
        limit=limit,
        slots=tuple(slots),
        revision=base.revision + 1,
        history=tuple(history[-HISTORY_LIMIT:]),
        transitions=transitions,
    )
    if limit == 1 and len(slots) == 1:
        rec = replace(rec, slots=())
    return rec


def decide_acquire(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    ttl: float,
    now: datetime,
    limit: int,
    allowance: float = 0.0,
    value: str | None = None,
    may_change_limit: bool = False,
) -> LeaseRecord:
    slots = list(slots_of(current)) if current is not None else []
    live = [s for s in slots if s.held_at(now, allowance)]
    if current is not None and live and limit != current.limit and not may_change_limit:
        raise limit_mismatch(
            key, LeaseView(for_lookup(current, now, allowance), now, allowance), limit
        )
    if current is not None and not current.slots and current.successor is not None:
        # Rule "transfer" holds whatever the limit asked: a plain lease handed to a
        # successor is its alone for one ttl, and its holder may not extend it.
        refusal = acquire_refusal(key, LeaseView(current, now, allowance), holder)
        if refusal is not None:
            raise refusal
    history = list(current.history) if current is not None else []
    transitions = current.transitions if current is not None else 0
    # A new term names no successor (the plain rules' new_term drops it too).
    base = replace(current, successor=None) if current is not None else None
    mine = next((s for s in live if s.holder == holder), None)
    if mine is not None:  # the caller's own slot, extended (idempotent)
        ext = replace(mine, ttl=ttl, renewed_at=now, expires_at=now + _seconds(ttl))
        if value is not None:
            ext = replace(ext, value=value, announced=False)
            history = [
                replace(t, value=value) if t.fencing_token == ext.fencing_token else t
                for t in history
            ]
        slots = [ext if s is mine else s for s in slots]
        assert base is not None
        return _settle(base, ext, slots, history, limit=limit, transitions=transitions)
    if len(live) >= limit:
        assert current is not None
        raise held(key, LeaseView(for_lookup(current, now, allowance), now, allowance))
    token = max((s.fencing_token for s in slots), default=0) + 1
    new = Slot(holder, token, ttl, now, now, now + _seconds(ttl), value=value)
    ended = [s for s in slots if not s.held_at(now, allowance)]
    for s in ended:
        _ended(history, s)
    # The place the new slot takes: the caller's own ended slot, else the one that
    # ended first; none ended while the key has fewer slots than its limit: a new place.
    replaced: Slot | None = None
    if ended and len(slots) >= limit:
        own = [s for s in ended if s.holder == holder]
        replaced = own[0] if own else min(ended, key=lambda s: s.free_at(allowance))
        slots = [new if s is replaced else s for s in slots]
    else:
        slots.append(new)
    # Ended slots beyond the limit (it was lowered) are dropped, oldest first.
    for s in sorted(ended, key=lambda s: s.free_at(allowance)):
        if len(slots) <= limit:
            break
        if s is not replaced:
            slots.remove(s)
    previous = replaced.holder if replaced is not None else (current.holder if current else None)
    if previous is not None and previous != holder:
        transitions += 1
    history.append(Term(holder=holder, fencing_token=token, acquired_at=now, value=value))
    if base is None:
        base = LeaseRecord(key, holder, token, ttl, now, now, now, revision=0)
    return _settle(base, new, slots, history, limit=limit, transitions=transitions)


def _find(
    current: LeaseRecord | None,
    key: str,
    holder: str,
    fencing_token: int,
    now: datetime,
    allowance: float,
) -> tuple[LeaseRecord, Slot]:
    if current is None:
        raise never_acquired(key)
    for s in slots_of(current):
        if s.holder == holder and s.fencing_token == fencing_token:
            return current, s
    raise lost(
        key, LeaseView(for_lookup(current, now, allowance), now, allowance), holder, fencing_token
    )


def decide_renew(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    fencing_token: int,
    ttl: float | None,
    now: datetime,
    allowance: float = 0.0,
    value: str | None = None,
    announce: bool = False,
) -> LeaseRecord:
    rec, mine = _find(current, key, holder, fencing_token, now, allowance)
    if mine.released:
        raise lost(key, LeaseView(focused(rec, mine), now, allowance), holder, fencing_token)
    others = [s for s in slots_of(rec) if s is not mine and s.held_at(now, allowance)]
    if not mine.held_at(now, allowance) and len(others) >= rec.limit:
        # Lapsed, and the places are full again (the limit was lowered meanwhile).
        raise lost(
            key, LeaseView(for_lookup(rec, now, allowance), now, allowance), holder, fencing_token
        )
    ttl = mine.ttl if ttl is None else ttl
    ext = replace(mine, ttl=ttl, renewed_at=now, expires_at=now + _seconds(ttl))
    history = list(rec.history)
    if value is not None:
        ext = replace(ext, value=value, announced=announce)
        history = [
            replace(t, value=value) if t.fencing_token == fencing_token else t for t in history
        ]
    slots = [ext if s is mine else s for s in slots_of(rec)]
    return _settle(rec, ext, slots, history, limit=rec.limit, transitions=rec.transitions)


def decide_release(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    fencing_token: int,
    now: datetime,
    allowance: float = 0.0,
) -> LeaseRecord:
    """The record with the caller's slot released; when it was already released,
    the record unchanged (same revision: nothing to write) focused on that slot."""
    rec, mine = _find(current, key, holder, fencing_token, now, allowance)
    if mine.released:
        return focused(rec, mine)
    done = replace(mine, released=True, expires_at=now)
    history = list(rec.history)
    _ended(history, done)
    slots = [done if s is mine else s for s in slots_of(rec)]
    return _settle(rec, done, slots, history, limit=rec.limit, transitions=rec.transitions)


def decide_revoke(current: LeaseRecord | None, *, key: str, now: datetime) -> LeaseRecord | None:
    """Every slot not yet released ends now, revoked; None when none was left."""
    if current is None:
        raise never_acquired(key)
    slots = list(slots_of(current))
    if all(s.released for s in slots):
        return None
    history = list(current.history)
    out = []
    for s in slots:
        if not s.released:
            s = replace(s, released=True, revoked=True, expires_at=now)
            _ended(history, s)
        out.append(s)
    latest = max(out, key=lambda s: s.fencing_token)
    return _settle(
        current, latest, out, history, limit=current.limit, transitions=current.transitions
    )


def _seconds(ttl: float) -> timedelta:
    return timedelta(seconds=ttl)


__all__ = [
    "LIMIT_MAX",
    "decide_acquire",
    "decide_release",
    "decide_renew",
    "decide_revoke",
]
