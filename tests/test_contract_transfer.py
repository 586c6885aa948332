"""Rule "transfer" (docs/contract.md), once, against every backend.

The same ``lease_backend`` fixture as ``test_contract.py``: memory, file, GCS
(emulator), PostgreSQL, SQLite and MariaDB, each a real store. Windows are
waited for by polling with a deadline on the backend's own clock
(``server_time`` of each answer), never by sleeping a guessed time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from leaderelection_service.lease_errors import (
    InvalidRequest,
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
)
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend

SHORT = 0.3


async def poll_acquire(backend: LeaseBackend, key: str, holder: str, timeout: float = 15.0):
    """Acquire ``key`` for ``holder`` as soon as the backend grants it; the refusals seen."""
    refusals: list[LeaseHeld] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return await backend.acquire(key, holder, 5.0), refusals
        except LeaseHeld as err:
            refusals.append(err)
            await asyncio.sleep(0.02)
    raise AssertionError(f"{holder} could not acquire {key} within {timeout} s")


async def test_holders_transfer_ends_the_term_and_names_the_successor(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    view = await lease_backend.transfer("k", "b", "a", a.record.fencing_token)
    rec = view.to_public()
    assert rec["held"] is False and rec["state"] == "released"
    assert rec["successor"] == "b"
    assert rec["holder"] == "a" and rec["fencing_token"] == a.record.fencing_token
    assert view.record.history[-1].ended_by == "transferred"
    again = await lease_backend.get("k")
    assert again.record.successor == "b" and again.record.released
    # the same transfer again (a retry after a lost answer) succeeds and writes nothing
    retry = await lease_backend.transfer("k", "b", "a", a.record.fencing_token)
    assert retry.record.revision == view.record.revision
    # the holder may not renew its ended term, nor transfer it elsewhere
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
    with pytest.raises(LeaseLost):
        await lease_backend.transfer("k", "c", "a", a.record.fencing_token)


async def test_successors_acquire_begins_a_new_term_and_clears_it(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    await lease_backend.transfer("k", "b", "a", a.record.fencing_token)
    b = await lease_backend.acquire("k", "b", 5.0)
    assert b.held and b.record.holder == "b"
    assert b.record.fencing_token == a.record.fencing_token + 1
    assert b.record.successor is None
    assert "successor" not in b.to_public()
    assert b.record.transitions == a.record.transitions + 1
    assert (await lease_backend.get("k")).record.successor is None


async def test_others_are_refused_while_the_successor_may_come(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    await lease_backend.transfer("k", "b", "a", a.record.fencing_token)
    for other in ("c", "a"):  # the old holder too
        with pytest.raises(LeaseHeld) as err:
            await lease_backend.acquire("k", other, 5.0)
        assert err.value.lease is not None
        assert err.value.lease.to_public()["successor"] == "b"
        assert "handed to 'b'" in str(err.value)
    assert (await lease_backend.get("k")).record.successor == "b"


async def test_anyone_may_acquire_once_the_successor_did_not_come(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    ended = await lease_backend.transfer("k", "b", "a", a.record.fencing_token)
    window_end = ended.record.expires_at + timedelta(seconds=SHORT)
    c, refusals = await poll_acquire(lease_backend, "k", "c")
    assert c.record.holder == "c" and c.record.successor is None
    assert c.record.fencing_token == a.record.fencing_token + 1
    assert c.server_time >= window_end  # never before the window ended, on the deciding clock
    assert all(r.lease is not None and r.lease.record.successor == "b" for r in refusals)


async def test_operators_transfer_keeps_the_term_and_the_holders_renew_is_lost(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    named = await lease_backend.transfer("k", "b")
    assert named.held and named.record.holder == "a"
    assert named.to_public()["successor"] == "b"
    # one leader (I1): nobody, the successor included, takes a held term
    for other in ("b", "c"):
        with pytest.raises(LeaseHeld):
            await lease_backend.acquire("k", other, 5.0)
    with pytest.raises(LeaseHeld):  # the holder's own acquire does not extend it either
        await lease_backend.acquire("k", "a", 5.0)
    with pytest.raises(LeaseLost) as err:
        await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
    assert err.value.lease is not None
    assert err.value.lease.record.successor == "b" and err.value.lease.held
    assert "handed to 'b'" in str(err.value)
    # the holder steps down: its release ends the term, the successor kept
    released = await lease_backend.release("k", "a", a.record.fencing_token)
    assert released.record.successor == "b" and not released.held
    assert released.record.history[-1].ended_by == "transferred"
    with pytest.raises(LeaseHeld):
        await lease_backend.acquire("k", "c", 5.0)
    b = await lease_backend.acquire("k", "b", 5.0)
    assert b.record.fencing_token == a.record.fencing_token + 1 and b.record.successor is None


async def test_operators_transfer_again_to_the_same_successor_writes_nothing(
    lease_backend: LeaseBackend,
) -> None:
    await lease_backend.acquire("k", "a", 5.0)
    first = await lease_backend.transfer("k", "b")
    again = await lease_backend.transfer("k", "b")
    assert again.record.revision == first.record.revision
    other = await lease_backend.transfer("k", "c")  # a new choice replaces the last
    assert other.record.successor == "c" and other.record.revision == first.record.revision + 1


async def test_a_lapsed_term_with_a_successor_waits_one_ttl_for_it(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    named = await lease_backend.transfer("k", "b")
    window_end = named.record.expires_at + timedelta(seconds=SHORT)
    c, _ = await poll_acquire(lease_backend, "k", "c")
    assert c.server_time >= window_end
    assert c.record.fencing_token == a.record.fencing_token + 1
    assert c.record.history[-2].ended_by == "expired"


async def test_bad_transfers_change_nothing(lease_backend: LeaseBackend) -> None:
    with pytest.raises(LeaseNotFound):
        await lease_backend.transfer("never", "b")
    with pytest.raises(LeaseNotFound):
        await lease_backend.transfer("never", "b", "a", 1)
    a = await lease_backend.acquire("k", "a", 5.0)
    before = (await lease_backend.get("k")).record
    with pytest.raises(InvalidRequest):
        await lease_backend.transfer("k", "a", "a", a.record.fencing_token)
    with pytest.raises(InvalidRequest):
        await lease_backend.transfer("k", "a")  # to the holder it already has
    with pytest.raises(LeaseLost):
        await lease_backend.transfer("k", "b", "a", a.record.fencing_token + 1)
    with pytest.raises(LeaseLost):
        await lease_backend.transfer("k", "b", "z", a.record.fencing_token)
    after = (await lease_backend.get("k")).record
    assert after.revision == before.revision and after.successor is None
    await lease_backend.release("k", "a", a.record.fencing_token)
    with pytest.raises(LeaseLost) as err:  # an operator's transfer needs a held term
        await lease_backend.transfer("k", "b")
    assert isinstance(err.value.lease, LeaseView) and err.value.lease.record.successor is None
    assert (await lease_backend.get("k")).record.successor is None


async def test_records_without_a_successor_answer_as_before(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    assert "successor" not in a.to_public()
    released = await lease_backend.release("k", "a", a.record.fencing_token)
    assert "successor" not in released.to_public()
    assert released.record.history[-1].ended_by == "released"


async def test_a_token_beyond_64_bits_is_lease_lost_and_changes_nothing(
    lease_backend: LeaseBackend,
) -> None:
    """B1: a fencing token no term ever had (here past a 64-bit column's range) is
    refused as any wrong token is, by renew, release and the holder's transfer."""
    a = await lease_backend.acquire("k", "a", 5.0)
    huge = 2**63
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", huge, 5.0)
    with pytest.raises(LeaseLost):
        await lease_backend.release("k", "a", huge)
    with pytest.raises(LeaseLost):
        await lease_backend.transfer("k", "b", "a", huge)
    still = await lease_backend.get("k")
    assert still.held and still.record.revision == a.record.revision
    assert still.record.successor is None
