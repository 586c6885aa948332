"""Rule "delete" and the token floor (docs/contract.md), on every backend.

A deleted key is gone from lookup and listing; a held one cannot be deleted;
and fencing (I2) holds across a delete: the key's next term, and any new
key's first one, is above every token a deleted key ever had.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from leaderelection_service.lease_errors import LeaseHeld, LeaseLost, LeaseNotFound
from leaderelection_service.storage import LeaseBackend

SHORT = 0.3


async def _terms(backend: LeaseBackend, key: str, n: int) -> int:
    """Acquire and release ``key`` ``n`` times; the last token."""
    token = 0
    for i in range(n):
        view = await backend.acquire(key, f"h{i % 2}", 5.0)
        assert view.record.fencing_token > token
        token = view.record.fencing_token
        await backend.release(key, f"h{i % 2}", token)
    return token


async def test_a_deleted_key_acquired_again_continues_above_its_tokens(
    lease_backend: LeaseBackend,
) -> None:
    last = await _terms(lease_backend, "k", 4)
    gone = await lease_backend.delete("k")
    assert (gone.record.key, gone.record.fencing_token, gone.held) == ("k", last, False)
    with pytest.raises(LeaseNotFound):
        await lease_backend.get("k")
    again = await lease_backend.acquire("k", "h0", 5.0)
    assert again.record.fencing_token > last
    assert again.record.transitions == 0 and len(again.record.history) == 1
    assert again.record.history[0].fencing_token == again.record.fencing_token
    # The old term's holder and token name nothing any more.
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "h1", last, 5.0)
    # Deleted twice over: still above every token it ever had.
    top = await _terms(lease_backend, "k", 0) or again.record.fencing_token
    await lease_backend.release("k", "h0", top)
    await lease_backend.delete("k")
    third = await lease_backend.acquire("k", "h2", 5.0)
    assert third.record.fencing_token > top


async def test_a_new_key_after_a_delete_starts_above_the_floor(
    lease_backend: LeaseBackend,
) -> None:
    kept = await _terms(lease_backend, "kept", 1)
    last = await _terms(lease_backend, "old", 3)
    await lease_backend.delete("old")
    fresh = await lease_backend.acquire("new", "a", 5.0)
    assert fresh.record.fencing_token > last
    # A key that existed all along keeps counting by one.
    assert (await lease_backend.acquire("kept", "a", 5.0)).record.fencing_token == kept + 1


async def test_delete_is_refused_while_held_and_changes_nothing(
    lease_backend: LeaseBackend,
) -> None:
    view = await lease_backend.acquire("k", "a", 5.0)
    with pytest.raises(LeaseHeld) as err:
        await lease_backend.delete("k")
    assert err.value.lease is not None and err.value.lease.record.holder == "a"
    after = await lease_backend.get("k")
    assert after.record.revision == view.record.revision and after.held
    renewed = await lease_backend.renew("k", "a", view.record.fencing_token, 5.0)
    assert renewed.record.fencing_token == view.record.fencing_token


async def test_delete_of_a_key_never_acquired_is_not_found(lease_backend: LeaseBackend) -> None:
    with pytest.raises(LeaseNotFound):
        await lease_backend.delete("never")
    await _terms(lease_backend, "once", 1)
    await lease_backend.delete("once")
    with pytest.raises(LeaseNotFound):
        await lease_backend.delete("once")


async def test_deleted_keys_leave_the_listing(lease_backend: LeaseBackend) -> None:
    for key in ("job.1", "job.2", "job.3"):
        await _terms(lease_backend, key, 1)
    await lease_backend.delete("job.2")
    listed = [v.record.key for v in await lease_backend.list("job.", None, 10)]
    assert listed == ["job.1", "job.3"]


async def test_revoked_and_lapsed_leases_may_be_deleted(lease_backend: LeaseBackend) -> None:
    held = await lease_backend.acquire("r", "a", 5.0)
    await lease_backend.revoke("r")
    assert (await lease_backend.delete("r")).record.fencing_token == held.record.fencing_token
    lapsing = await lease_backend.acquire("x", "a", SHORT)
    deadline = time.monotonic() + 10
    while (await lease_backend.get("x")).held:
        assert time.monotonic() < deadline, "x did not lapse"
        await asyncio.sleep(0.05)
    await lease_backend.delete("x")
    # The lapsed holder's renew finds nothing to renew.
    with pytest.raises(LeaseNotFound):
        await lease_backend.renew("x", "a", lapsing.record.fencing_token, 5.0)
