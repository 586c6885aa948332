"""Lease events from record pairs (events.py) and the hub's fan-out (watch_hub.py).

Pure functions over records on a controlled clock; the streams over HTTP are
tested against real service processes in test_watch.py.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta

import pytest

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.backends.sql.notify import Changes
from leaderelection_service.events import describe, seen, transition
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import LeaseRecord, LeaseView
from leaderelection_service.subscription import Subscription, TooManyForOwner
from leaderelection_service.watch_hub import PAGE, WatchHub

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def view(rec: LeaseRecord, t: float) -> LeaseView:
    return LeaseView(rec, at(t))


def acquire(cur: LeaseRecord | None, holder: str, t: float, ttl: float = 10.0) -> LeaseRecord:
    return LeaseRecord.new_term(cur, key="k", holder=holder, ttl=ttl, now=at(t))


def kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.type for e in events]


def test_describe_names_the_current_state() -> None:
    a = acquire(None, "a", 0)
    assert describe(view(a, 1)).type == "acquired"
    assert describe(view(a.released_at(at(2)), 3)).type == "released"
    assert describe(view(a, 20)).type == "expired"
    b = acquire(a, "b", 20)
    assert describe(view(b, 21)).type == "taken_over"
    c = acquire(b.released_at(at(22)), "c", 23)
    assert describe(view(c, 24)).type == "acquired"
    again = acquire(a, "a", 30)  # the same holder after its own lapse
    assert describe(view(again, 31)).type == "acquired"


def test_versions_order_a_keys_states() -> None:
    a = acquire(None, "a", 0)
    held, lapsed = describe(view(a, 1)), describe(view(a, 11))
    assert held.version == 2 * a.revision
    assert lapsed.version == held.version + 1
    renewed = a.extended(ttl=10, now=at(12))
    assert describe(view(renewed, 13)).version > lapsed.version
    assert held.id == f"k:{held.version}"


def test_step_by_step_transitions() -> None:
    a = acquire(None, "a", 0)
    s = seen(view(a, 1))
    assert transition(s, view(a, 2)) == []
    r = a.extended(ttl=10, now=at(3))
    assert kinds(transition(s, view(r, 4))) == ["renewed"]
    rel = r.released_at(at(5))
    assert kinds(transition(seen(view(r, 4)), view(rel, 6))) == ["released"]
    b = acquire(rel, "b", 7, ttl=1)
    assert kinds(transition(seen(view(rel, 6)), view(b, 7.5))) == ["acquired"]
    lapse = transition(seen(view(b, 7.5)), view(b, 9))
    assert kinds(lapse) == ["expired"] and lapse[0].lease["held"] is False
    assert transition(seen(view(b, 9)), view(b, 10)) == []  # reported once
    c = acquire(b, "c", 11)
    assert kinds(transition(seen(view(b, 9)), view(c, 11))) == ["taken_over"]


def test_renewal_of_a_lapsed_lease_is_a_revival_every_watcher_gets() -> None:
    a = acquire(None, "a", 0, ttl=1)
    back = a.extended(ttl=10, now=at(5))
    (ev,) = transition(seen(view(a, 2)), view(back, 5))
    assert ev.type == "renewed" and ev.revived
    (plain,) = transition(seen(view(a, 0.5)), view(back, 5))
    assert plain.type == "renewed" and not plain.revived


def test_a_value_change_reaches_every_watcher_only_when_announced() -> None:
    a = LeaseRecord.new_term(None, key="k", holder="a", ttl=10, now=at(0), value="v1")
    plain = Subscription(None, "", renewed=False)
    renewals = Subscription(None, "", renewed=True)
    quiet = a.extended(ttl=10, now=at(1), value="v2")
    (ev,) = transition(seen(view(a, 0.5)), view(quiet, 1))
    assert (ev.type, ev.lease["value"], ev.announced) == ("renewed", "v2", False)
    assert renewals.wants(ev) and not plain.wants(ev)
    told = quiet.extended(ttl=10, now=at(2), value="v3", announce=True)
    (ev,) = transition(seen(view(quiet, 1)), view(told, 2))
    assert ev.announced and plain.wants(ev) and renewals.wants(ev)
    # A later renewal that keeps the value is an ordinary renewal again ...
    kept = told.extended(ttl=10, now=at(3))
    (ev,) = transition(seen(view(told, 2)), view(kept, 3))
    assert not ev.announced and not plain.wants(ev)
    # ... but folded with the announced change a reader had not yet seen, it is told.
    (ev,) = transition(seen(view(quiet, 1)), view(kept, 3))
    assert ev.announced and ev.lease["value"] == "v3"
    # The same value announced again is no change: nothing to tell.
    same = kept.extended(ttl=10, now=at(4), value="v3", announce=True)
    (ev,) = transition(seen(view(kept, 3)), view(same, 4))
    assert not ev.announced


def test_takeover_before_the_expiry_was_seen_reports_both() -> None:
    a = acquire(None, "a", 0, ttl=1)
    b = acquire(a, "b", 2)
    events = transition(seen(view(a, 0.5)), view(b, 2.5))
    assert kinds(events) == ["expired", "taken_over"]
    assert events[0].lease["holder"] == "a" and events[0].lease["held"] is False
    assert events[0].version < events[1].version


def test_changes_between_two_reads_are_folded_in_order() -> None:
    a = acquire(None, "a", 0)
    rel = a.released_at(at(1))
    b = acquire(rel, "b", 2)
    events = transition(seen(view(a, 0.5)), view(b, 3))
    assert kinds(events) == ["released", "acquired"]
    b_rel = b.released_at(at(4))
    events = transition(seen(view(a, 0.5)), view(b_rel, 5))
    assert kinds(events) == ["released", "acquired", "released"]
    assert [e.lease["holder"] for e in events] == ["a", "b", "b"]
    versions = [e.version for e in events]
    assert versions == sorted(set(versions))
    short = acquire(rel, "c", 2, ttl=1)
    assert kinds(transition(seen(view(a, 0.5)), view(short, 9))) == [
        "released",
        "acquired",
        "expired",
    ]


async def test_hub_fans_out_in_order_and_filters_renewals() -> None:
    backend = CasLeases(MemoryStore())
    hub = WatchHub(backend, poll_interval=0.05)
    everything = hub.subscribe(prefix="", renewed=True)
    jobs = hub.subscribe(prefix="jobs.")
    one = hub.subscribe(key="cron")
    try:
        for sub in (everything, jobs, one):
            await replay(hub, sub)
        a = await backend.acquire("cron", "a", 30)
        got = [await wait_for(everything, "acquired")]
        await backend.renew("cron", "a", a.record.fencing_token, 30)
        got.append(await wait_for(everything, "renewed"))
        await backend.acquire("jobs.x", "a", 30)
        got.append(await wait_for(everything, "acquired"))
        await backend.release("cron", "a", a.record.fencing_token)
        got.append(await wait_for(everything, "released"))
        assert [(e.key, e.type) for e in got] == [
            ("cron", "acquired"),
            ("cron", "renewed"),
            ("jobs.x", "acquired"),
            ("cron", "released"),
        ]
        assert (await wait_for(jobs, "acquired")).key == "jobs.x"
        assert [(await one.get()).type for _ in range(2)] == ["acquired", "released"]  # type: ignore[union-attr]
        assert jobs.queue.empty() and one.queue.empty()
    finally:
        await hub.close()
    assert await everything.get() is None  # closing ends every stream


async def test_a_slow_subscriber_is_dropped_not_buffered() -> None:
    backend = CasLeases(MemoryStore())
    hub = WatchHub(backend, poll_interval=0.05, queue_size=4)
    slow = hub.subscribe(prefix="", renewed=True)
    fast = hub.subscribe(prefix="", renewed=True)
    try:
        await replay(hub, slow)
        await replay(hub, fast)
        a = await backend.acquire("k", "a", 30)
        for _ in range(12):
            await backend.renew("k", "a", a.record.fencing_token, 30)
            while not fast.queue.empty():
                await fast.get()
            await asyncio.sleep(0.03)
        assert slow.dropped and hub.subscribers == 1
        assert await slow.get() is None
        assert "fell 4 events behind" in slow.reason
        assert not fast.dropped
    finally:
        await hub.close()


async def replay(hub: WatchHub, sub: Subscription) -> int:
    """What a stream does: read its replay through the hub, a page at a time."""
    prefix = sub.key if sub.key is not None else sub.prefix
    after, count = None, 0
    while True:
        page = await hub.read_page(sub, lambda after=after: hub.backend.list(prefix, after, PAGE))
        count += len(page)
        if len(page) < PAGE:
            hub.replayed(sub)
            return count
        after = page[-1].record.key


async def wait_for(sub, kind: str, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """The subscriber's next event, which must be of ``kind``."""
    async with asyncio.timeout(timeout):
        ev = await sub.get()
    assert ev is not None, "stream ended"
    assert ev.type == kind, ev
    return ev


async def test_a_change_signalled_between_two_waits_is_not_lost() -> None:
    changes = Changes()
    changes.fire()  # e.g. a NOTIFY while the hub was re-reading
    async with asyncio.timeout(1):
        await changes.wait(30)  # returns at once
    waiter = asyncio.create_task(changes.wait(30))
    coro = waiter.get_coro()
    assert coro is not None
    for _ in range(100):  # until the task has run (a not-yet-started one is not "waiting")
        if inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:  # type: ignore[arg-type]
            break
        await asyncio.sleep(0)
    for _ in range(5):  # and give it the turns to return, if it were to
        await asyncio.sleep(0)
    # nothing new since: it started and is suspended, waiting
    assert inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED  # type: ignore[arg-type]
    assert not waiter.done()
    changes.fire()
    async with asyncio.timeout(1):
        await waiter


async def test_a_new_subscriber_over_many_keys_gets_no_queued_replay() -> None:
    """The hub queues live changes only: 1,500 existing keys cost the queue nothing."""
    backend = CasLeases(MemoryStore())
    for n in range(1500):
        await backend.acquire(f"k{n:05d}", "a", 60)
    hub = WatchHub(backend, poll_interval=0.05, queue_size=16)
    sub = hub.subscribe(prefix="k")
    try:
        await replay(hub, sub)
        assert sub.queue.empty() and not sub.dropped
        await backend.acquire("k99999", "b", 60)  # created after the hub's read: live
        created = await wait_for(sub, "acquired")
        assert created.key == "k99999" and not sub.dropped
    finally:
        await hub.close()


async def test_queued_changes_and_the_replay_merge_by_version() -> None:
    backend = CasLeases(MemoryStore())
    a = await backend.acquire("cron", "a", 60)
    hub = WatchHub(backend, poll_interval=0.05)
    sub = hub.subscribe(key="cron")
    try:
        await hub.read_page(sub, lambda: hub.backend.list("cron", None, 1))
        await backend.release("cron", "a", a.record.fencing_token)
        released = await wait_for(sub, "released")
        replayed_new = describe(await backend.get("cron"), replay=True)
        replayed_old = describe(a, replay=True)
        assert sub.accept(replayed_new)  # the replay read after the release: sent
        assert not sub.accept(released)  # the same version again: not sent twice
        assert not sub.accept(replayed_old)  # an older state never follows a newer one
        hub.replayed(sub)
        b = await backend.acquire("cron", "b", 60)
        await wait_for(sub, "acquired")
        await backend.release("cron", "b", b.record.fencing_token)
        await wait_for(sub, "released")
        assert sub.last is None  # two reads after the replay: versions no longer kept
    finally:
        await hub.close()


async def test_streams_are_capped_per_owner_not_only_per_process() -> None:
    hub = WatchHub(CasLeases(MemoryStore()), poll_interval=0.05, per_owner=3)
    try:
        mine = [hub.subscribe(prefix="", owner="token #1") for _ in range(3)]
        with pytest.raises(TooManyForOwner, match="token #1 already has 3 open watch streams"):
            hub.subscribe(prefix="", owner="token #1")
        other = hub.subscribe(prefix="", owner="token #2")  # another owner still gets one
        hub.unsubscribe(mine[0])
        again = hub.subscribe(prefix="", owner="token #1")  # a freed slot can be taken again
        assert hub.subscribers == 4 and other is not again
    finally:
        await hub.close()


def test_revoke_is_an_event_of_its_own_and_ends_the_term_in_the_history() -> None:
    a = acquire(None, "a", 0)
    revoked = a.released_at(at(1), revoked=True)
    (ev,) = transition(seen(view(a, 0.5)), view(revoked, 1))
    assert (ev.type, ev.lease["state"]) == ("revoked", "revoked")
    assert describe(view(revoked, 2)).type == "revoked"
    b = acquire(revoked, "b", 3)
    assert describe(view(b, 4)).type == "acquired"  # a revoked lease was free, not taken over
    # A reader that last saw a's term hears that it was revoked, then b's term.
    assert kinds(transition(seen(view(a, 0.5)), view(b, 4))) == ["revoked", "acquired"]


@pytest.mark.parametrize(
    ("renewed", "announce", "expected"),
    [(False, True, "renewed"), (False, False, None), (True, False, "renewed")],
)
async def test_a_term_the_replay_sent_goes_on_when_the_hub_first_meets_its_key(
    renewed: bool, announce: bool, expected: str | None
) -> None:
    """The key was created between two of the hub's reads and renewed with a new
    value before the hub's next read: the hub calls what it meets the start of a
    term, but the stream's replay already sent that term, so the stream sends
    the value's renewal (rule "value"), never a second ``acquired``."""
    backend = CasLeases(MemoryStore())
    v1 = await backend.acquire("k", "a", 60, "v1")
    token = v1.record.fencing_token
    v2 = await backend.renew("k", "a", token, None, "v2", announce)
    sub = Subscription(key="k", prefix="", renewed=renewed)
    assert sub.accept(describe(v1, replay=True)) is not None
    hub_met = describe(v2)  # what the hub describes for a key it had not seen
    assert hub_met.type == "acquired"
    sent = sub.accept(hub_met)
    assert (sent.type if sent else None) == expected
    if sent is not None:
        assert (sent.lease["value"], sent.lease["fencing_token"]) == ("v2", token)
    # a new term is a new term, whatever the stream sent before
    await backend.release("k", "a", token)
    v3 = await backend.acquire("k", "b", 60, "v3")
    third = sub.accept(describe(v3))
    assert third is not None and third.type == "acquired"


def test_transfers_are_events_of_their_own() -> None:
    a = acquire(None, "a", 0)
    named = a.handed_to("b")  # an operator's transfer: the term goes on
    (ev,) = transition(seen(view(a, 0.5)), view(named, 1))
    assert (ev.type, ev.lease["held"], ev.lease["successor"]) == ("successor_named", True, "b")
    assert Subscription(None, "", False, asyncio.Queue()).wants(ev)  # every watcher gets it
    ended = named.released_at(at(2))  # its holder steps down: the successor is kept
    (ev,) = transition(seen(view(named, 1)), view(ended, 2))
    assert (ev.type, ev.lease["state"], ev.lease["successor"]) == ("transferred", "released", "b")
    assert describe(view(ended, 3)).type == "transferred"
    b = acquire(ended, "b", 3)
    assert describe(view(b, 4)).type == "acquired"  # handed on, not taken over
    # A reader that last saw a's held term hears that it was handed on, then b's term.
    events = transition(seen(view(a, 0.5)), view(b, 4))
    assert kinds(events) == ["transferred", "acquired"]
    assert events[0].lease["state"] == "released"
    # the holder's own transfer: one write ends the term and names the successor
    direct = a.released_at(at(1), successor="c")
    (ev,) = transition(seen(view(a, 0.5)), view(direct, 1))
    assert (ev.type, ev.lease["successor"]) == ("transferred", "c")
