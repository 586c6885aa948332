"""Unit tests of the lease rules with a controlled clock (no I/O but memory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.lease_errors import LeaseHeld, LeaseLost
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import HISTORY_LIMIT, LeaseRecord, parse_time, rfc3339


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def leases(clock: FakeClock, allowance: float = 0.0) -> CasLeases:
    return CasLeases(MemoryStore(), clock=clock, clock_skew_allowance=allowance)


async def test_expiry_is_exact(clock: FakeClock) -> None:
    le = leases(clock)
    await le.acquire("k", "a", 2.0)
    clock.advance(1.999)
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "b", 2.0)
    clock.advance(0.001)
    assert (await le.acquire("k", "b", 2.0)).record.fencing_token == 2


async def test_skew_allowance_delays_takeover_only(clock: FakeClock) -> None:
    le = leases(clock, allowance=1.0)
    a = await le.acquire("k", "a", 2.0)
    clock.advance(2.5)
    assert (await le.get("k")).held  # inside the allowance
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "b", 2.0)
    clock.advance(0.5)
    assert not (await le.get("k")).held
    b = await le.acquire("k", "b", 2.0)
    assert b.record.fencing_token == a.record.fencing_token + 1


async def test_released_lease_is_free_at_once_despite_allowance(clock: FakeClock) -> None:
    le = leases(clock, allowance=5.0)
    a = await le.acquire("k", "a", 60.0)
    await le.release("k", "a", a.record.fencing_token)
    assert (await le.acquire("k", "b", 2.0)).record.holder == "b"


async def test_same_holder_after_expiry_gets_new_term(clock: FakeClock) -> None:
    le = leases(clock)
    a = await le.acquire("k", "a", 1.0)
    clock.advance(5)
    again = await le.acquire("k", "a", 1.0)
    assert again.record.fencing_token == a.record.fencing_token + 1
    assert again.record.acquired_at == clock.now
    assert again.record.transitions == 0


async def test_history_records_terms_and_how_they_ended(clock: FakeClock) -> None:
    le = leases(clock)
    a = await le.acquire("k", "a", 1.0)
    clock.advance(2)  # a lapses
    b = await le.acquire("k", "b", 10.0)
    clock.advance(1)
    await le.release("k", "b", b.record.fencing_token)
    c = await le.acquire("k", "c", 10.0)
    hist = c.record.history
    assert [(t.holder, t.fencing_token, t.ended_by) for t in hist] == [
        ("a", 1, "expired"),
        ("b", 2, "released"),
        ("c", 3, None),
    ]
    assert hist[0].ended_at == a.record.expires_at
    assert c.record.transitions == 2


async def test_history_is_bounded(clock: FakeClock) -> None:
    le = leases(clock)
    for i in range(HISTORY_LIMIT + 5):
        v = await le.acquire("k", f"h{i}", 10.0)
        await le.release("k", f"h{i}", v.record.fencing_token)
    rec = (await le.get("k")).record
    assert len(rec.history) == HISTORY_LIMIT
    assert rec.history[-1].fencing_token == HISTORY_LIMIT + 5


async def test_renew_of_expired_but_untaken_lease_keeps_term(clock: FakeClock) -> None:
    le = leases(clock)
    a = await le.acquire("k", "a", 1.0)
    clock.advance(10)
    r = await le.renew("k", "a", a.record.fencing_token, 1.0)
    assert r.held and r.record.fencing_token == a.record.fencing_token


async def test_lost_race_is_answered_from_the_winners_record(clock: FakeClock) -> None:
    """A compare-and-set that loses re-reads: the loser sees lease_held, never a retried win."""
    store = MemoryStore()
    le = CasLeases(store, clock=clock)
    real_read = store.read
    raced = False

    async def read_then_race(key: str):  # type: ignore[no-untyped-def]
        nonlocal raced
        cur = await real_read(key)
        if not raced:
            raced = True
            rival = LeaseRecord.new_term(None, key=key, holder="rival", ttl=10.0, now=clock.now)
            await store.write(key, rival, None)
        return cur

    store.read = read_then_race  # type: ignore[method-assign]
    with pytest.raises(LeaseHeld) as err:
        await le.acquire("k", "me", 10.0)
    assert err.value.lease is not None and err.value.lease.record.holder == "rival"


async def test_renew_with_stale_token_after_takeover_is_lost(clock: FakeClock) -> None:
    le = leases(clock)
    a = await le.acquire("k", "a", 1.0)
    clock.advance(2)
    await le.acquire("k", "b", 1.0)
    clock.advance(2)
    with pytest.raises(LeaseLost):
        await le.renew("k", "a", a.record.fencing_token, 1.0)


def test_times_are_utc_with_microseconds_and_a_z() -> None:
    t = datetime(2026, 11, 27, 9, 20, 16, 123456, tzinfo=UTC)
    assert rfc3339(t) == "2026-11-27T09:20:16.123456Z"
    assert rfc3339(t.replace(microsecond=0)) == "2026-11-27T09:20:16.000000Z"
    assert rfc3339(t.astimezone(timezone(timedelta(hours=-5)))) == "2026-11-27T09:20:16.123456Z"
    for text in ("2026-11-27T09:20:16.123456Z", "2026-11-27T11:20:16.123456+02:00"):
        assert parse_time(text) == t
        assert parse_time(text).tzinfo is UTC
