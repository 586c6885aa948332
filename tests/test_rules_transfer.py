"""Rule "transfer" with a controlled clock: the successor's window, exactly (memory store)."""

from __future__ import annotations

import pytest
from test_rules import FakeClock, leases

from leaderelection_service.lease_errors import LeaseHeld, LeaseLost


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_the_window_after_a_transfer_lasts_one_ttl_plus_the_allowance(
    clock: FakeClock,
) -> None:
    le = leases(clock, allowance=1.0)
    a = await le.acquire("k", "a", 10.0)
    clock.advance(3)
    await le.transfer("k", "b", "a", a.record.fencing_token)  # the term ends now
    clock.advance(10.999)  # 10 s (ttl) + 1 s (allowance) - 1 ms
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "c", 5.0)
    clock.advance(0.001)
    c = await le.acquire("k", "c", 5.0)
    assert c.record.holder == "c" and c.record.successor is None


async def test_an_operators_successor_waits_for_the_lapse_then_one_ttl(clock: FakeClock) -> None:
    le = leases(clock, allowance=0.5)
    a = await le.acquire("k", "a", 4.0)
    await le.transfer("k", "b")
    clock.advance(4.499)  # still held (expiry + allowance): not even the successor
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "b", 4.0)
    clock.advance(0.001)  # lapsed: the successor's window opens
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "c", 4.0)
    clock.advance(3.999)  # 4 s (ttl) after the expiry, plus the allowance, less 1 ms
    with pytest.raises(LeaseHeld):
        await le.acquire("k", "c", 4.0)
    clock.advance(0.001)
    assert (await le.acquire("k", "c", 4.0)).record.fencing_token == a.record.fencing_token + 1


async def test_the_successor_may_take_it_at_once_and_late_renewals_stay_refused(
    clock: FakeClock,
) -> None:
    le = leases(clock)
    a = await le.acquire("k", "a", 10.0)
    await le.transfer("k", "b")
    with pytest.raises(LeaseLost):
        await le.renew("k", "a", a.record.fencing_token, None)
    await le.release("k", "a", a.record.fencing_token)
    b = await le.acquire("k", "b", 10.0)
    assert b.record.fencing_token == 2 and b.record.transitions == 1
    assert [t.ended_by for t in b.record.history] == ["transferred", None]
    with pytest.raises(LeaseLost):  # the old term's token is stale now
        await le.transfer("k", "c", "a", a.record.fencing_token)
