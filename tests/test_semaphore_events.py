"""Watch events of a semaphore key: each write's event is the slot it concerned.

Played through ``semaphore_rules`` on a fixed clock and ``events.transition``,
as the watch hub reads a key between writes: a second holder's grant is
``acquired`` and ends nobody's term; a renew is ``renewed``; a release is
``released`` for that slot only; every event's lease lists the holders.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from leaderelection_service import semaphore_rules
from leaderelection_service.events import describe, seen, transition
from leaderelection_service.records import LeaseRecord, LeaseView

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_each_write_is_one_event_about_its_slot() -> None:
    a = semaphore_rules.decide_acquire(None, key="s", holder="a", ttl=10, now=at(0), limit=3)
    first = describe(LeaseView(a, at(0)))
    assert first.type == "acquired" and first.lease["holder"] == "a"
    b = semaphore_rules.decide_acquire(a, key="s", holder="b", ttl=10, now=at(1), limit=3)
    steps: list[tuple[LeaseRecord, datetime]] = [(a, at(0)), (b, at(1))]
    r = semaphore_rules.decide_renew(b, key="s", holder="a", fencing_token=1, ttl=None, now=at(2))
    steps.append((r, at(2)))
    rel = semaphore_rules.decide_release(r, key="s", holder="b", fencing_token=2, now=at(3))
    steps.append((rel, at(3)))
    got = []
    for (old, t_old), (new, t_new) in itertools.pairwise(steps):
        events = transition(seen(LeaseView(old, t_old)), LeaseView(new, t_new))
        got.append([(e.type, e.lease["holder"], e.lease["fencing_token"]) for e in events])
        versions = [e.version for e in events]
        assert versions == sorted(set(versions))
    assert got == [
        [("acquired", "b", 2)],
        [("renewed", "a", 1)],
        [("released", "b", 2)],
    ]
    last = transition(seen(LeaseView(r, at(2))), LeaseView(rel, at(3)))[0]
    assert [h["holder"] for h in last.lease["holders"]] == ["a"]


def test_the_written_slot_lapsing_is_expired() -> None:
    a = semaphore_rules.decide_acquire(None, key="s", holder="a", ttl=10, now=at(0), limit=2)
    b = semaphore_rules.decide_acquire(a, key="s", holder="b", ttl=5, now=at(1), limit=2)
    events = transition(seen(LeaseView(b, at(1))), LeaseView(b, at(7)))
    assert [(e.type, e.lease["holder"]) for e in events] == [("expired", "b")]
    assert [h["holder"] for h in events[0].lease["holders"]] == ["a"]
