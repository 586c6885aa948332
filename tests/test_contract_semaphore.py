"""The semaphore rules (docs/contract.md, "Semaphores"), once, against every backend (C1).

A key acquired with ``limit`` N grants up to N holders at once, each with its
own term, expiry and fencing token; every backend of ``support.backends``
runs these on a real store. The HTTP layer's checks of ``limit`` (422, the
admin token) are in ``test_semaphore_http.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from leaderelection_service.lease_errors import LeaseHeld, LeaseLost, LimitMismatch
from leaderelection_service.storage import LeaseBackend

SHORT = 0.3
PLAIN_FIELDS = {
    "key",
    "holder",
    "fencing_token",
    "ttl",
    "acquired_at",
    "renewed_at",
    "expires_at",
    "transitions",
    "held",
    "state",
    "value",
    "server_time",
}
"""A plain lease's answer, exactly: a limit-1 key adds nothing."""


def held_by(view: object) -> list[str]:
    return [h["holder"] for h in view.to_public()["holders"]]  # type: ignore[attr-defined]


async def wait_until_held(
    backend: LeaseBackend, key: str, count: int, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = (await backend.get(key)).to_public()
        if len(rec.get("holders", [])) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} did not come to {count} holders within {timeout} s")


async def test_n_grants_then_the_next_is_lease_held(lease_backend: LeaseBackend) -> None:
    views = [await lease_backend.acquire("s", f"h{i}", 5.0, None, 3) for i in range(3)]
    tokens = [v.record.fencing_token for v in views]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    for i, v in enumerate(views):  # each answer describes the caller's slot
        assert v.record.holder == f"h{i}" and v.held
    assert held_by(views[-1]) == ["h0", "h1", "h2"]
    assert views[-1].to_public()["limit"] == 3
    with pytest.raises(LeaseHeld) as err:
        await lease_backend.acquire("s", "h3", 5.0, None, 3)
    assert err.value.lease is not None
    assert held_by(err.value.lease) == ["h0", "h1", "h2"]
    again = await lease_backend.acquire("s", "h1", 5.0, None, 3)  # its own slot: idempotent
    assert again.record.fencing_token == tokens[1]


async def test_tokens_strictly_increase_across_slots(lease_backend: LeaseBackend) -> None:
    seen = []
    for round_ in range(3):
        views = [await lease_backend.acquire("s", f"h{i}", 5.0, None, 2) for i in range(2)]
        for v in views:
            seen.append(v.record.fencing_token)
            await lease_backend.release("s", v.record.holder, v.record.fencing_token)
        assert round_ >= 0
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_release_frees_one_place(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("s", "a", 5.0, None, 2)
    await lease_backend.acquire("s", "b", 5.0, None, 2)
    rel = await lease_backend.release("s", "a", a.record.fencing_token)
    assert rel.record.holder == "a" and rel.to_public()["state"] == "released"
    assert held_by(rel) == ["b"]
    again = await lease_backend.release("s", "a", a.record.fencing_token)  # writes nothing
    assert again.record.holder == "a" and again.to_public()["state"] == "released"
    with pytest.raises(LeaseLost) as err:
        await lease_backend.renew("s", "a", a.record.fencing_token, 5.0)
    assert "released" in err.value.message
    c = await lease_backend.acquire("s", "c", 5.0, None, 2)
    assert held_by(c) == ["b", "c"]
    with pytest.raises(LeaseHeld):
        await lease_backend.acquire("s", "d", 5.0, None, 2)


async def test_each_slot_expires_on_its_own(lease_backend: LeaseBackend) -> None:
    short = await lease_backend.acquire("s", "short", SHORT, None, 2)
    await lease_backend.acquire("s", "long", 30.0, None, 2)
    await wait_until_held(lease_backend, "s", 1)
    assert held_by(await lease_backend.get("s")) == ["long"]
    c = await lease_backend.acquire("s", "c", 5.0, None, 2)  # the lapsed place is free
    assert c.record.fencing_token > short.record.fencing_token
    with pytest.raises(LeaseLost):  # its place was given to c
        await lease_backend.renew("s", "short", short.record.fencing_token, 5.0)


async def test_renew_is_per_slot(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("s", "a", 2.0, None, 2)
    b = await lease_backend.acquire("s", "b", 2.0, None, 2)
    r = await lease_backend.renew("s", "a", a.record.fencing_token, 9.0, "v-a")
    assert r.record.holder == "a" and r.record.ttl == 9.0 and r.record.value == "v-a"
    slots = {h["holder"]: h for h in r.to_public()["holders"]}
    assert slots["b"]["ttl"] == 2.0 and slots["b"]["expires_at"] == b.to_public()["expires_at"]
    with pytest.raises(LeaseLost):
        await lease_backend.renew("s", "a", b.record.fencing_token, 5.0)


async def test_limit_mismatch_while_held(lease_backend: LeaseBackend) -> None:
    await lease_backend.acquire("plain", "a", 5.0)
    with pytest.raises(LimitMismatch) as err:
        await lease_backend.acquire("plain", "b", 5.0, None, 3)
    assert err.value.code == "limit_mismatch" and err.value.status == 409
    await lease_backend.acquire("s", "a", 5.0, None, 3)
    for limit in (1, 2):
        with pytest.raises(LimitMismatch):
            await lease_backend.acquire("s", "b", 5.0, None, limit)
    assert held_by(await lease_backend.get("s")) == ["a"]


async def test_admin_changes_the_limit(lease_backend: LeaseBackend) -> None:
    for h in ("a", "b", "c"):
        await lease_backend.acquire("s", h, 5.0, None, 3)
    # Lowered to 2 by an admin: nobody loses a slot, new grants wait for a place.
    admin = await lease_backend.acquire("s", "a", 5.0, None, 2, True)
    assert admin.to_public()["limit"] == 2 and held_by(admin) == ["a", "b", "c"]
    with pytest.raises(LeaseHeld):
        await lease_backend.acquire("s", "d", 5.0, None, 2)
    b = (await lease_backend.get("s")).to_public()["holders"][1]
    await lease_backend.release("s", "b", b["fencing_token"])
    with pytest.raises(LeaseHeld):  # two held: as many as the new limit
        await lease_backend.acquire("s", "d", 5.0, None, 2)
    raised = await lease_backend.acquire("s", "d", 5.0, None, 4, True)
    assert raised.to_public()["limit"] == 4 and held_by(raised) == ["a", "c", "d"]


async def test_free_key_takes_the_next_limit(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    await lease_backend.release("k", "a", a.record.fencing_token)
    s = await lease_backend.acquire("k", "b", 5.0, None, 2)
    assert s.record.fencing_token == a.record.fencing_token + 1
    assert s.to_public()["limit"] == 2
    await lease_backend.release("k", "b", s.record.fencing_token)
    p = await lease_backend.acquire("k", "c", 5.0)
    assert set(p.to_public()) == PLAIN_FIELDS  # back to a plain lease
    assert p.record.fencing_token == s.record.fencing_token + 1


async def test_limit_one_answers_unchanged(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 5.0, None, 1)
    assert set(a.to_public()) == PLAIN_FIELDS
    r = await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
    assert set(r.to_public()) == PLAIN_FIELDS
    assert set((await lease_backend.get("k")).to_public()) == PLAIN_FIELDS
    (listed,) = await lease_backend.list("", None, 10)
    assert set(listed.to_public()) == PLAIN_FIELDS
    rel = await lease_backend.release("k", "a", a.record.fencing_token)
    assert set(rel.to_public()) == PLAIN_FIELDS


async def test_lookup_and_list_show_every_holder(lease_backend: LeaseBackend) -> None:
    for h in ("a", "b"):
        await lease_backend.acquire("s", h, 5.0, None, 3)
    got = await lease_backend.get("s")
    assert got.record.holder == "b" and held_by(got) == ["a", "b"]
    (listed,) = await lease_backend.list("s", None, 10)
    assert held_by(listed) == ["a", "b"] and listed.to_public()["limit"] == 3


async def test_revoke_ends_every_slot(lease_backend: LeaseBackend) -> None:
    for h in ("a", "b"):
        await lease_backend.acquire("s", h, 5.0, None, 2)
    rev = await lease_backend.revoke("s")
    assert rev.to_public()["holders"] == [] and rev.to_public()["state"] == "revoked"
    c = await lease_backend.acquire("s", "c", 5.0, None, 2)
    assert held_by(c) == ["c"]


async def test_concurrent_acquires_never_exceed_the_limit(lease_backend: LeaseBackend) -> None:
    async def one(i: int) -> int | None:
        try:
            return (await lease_backend.acquire("s", f"h{i}", 5.0, None, 3)).record.fencing_token
        except LeaseHeld:
            return None

    got = await asyncio.gather(*(one(i) for i in range(8)))
    granted = [t for t in got if t is not None]
    assert len(granted) == 3 and len(set(granted)) == 3
    assert len(held_by(await lease_backend.get("s"))) == 3


async def test_history_keeps_every_slots_terms(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("s", "a", 5.0, None, 2)
    await lease_backend.acquire(
        "s",
        "b",
        5.0,
        None,
        2,
    )
    await lease_backend.release("s", "a", a.record.fencing_token)
    c = await lease_backend.acquire("s", "c", 5.0, "v-c", 2)
    terms = [(t.holder, t.fencing_token, t.ended_by, t.value) for t in c.record.history]
    assert terms == [("a", 1, "released", None), ("b", 2, None, None), ("c", 3, None, "v-c")]
    got = (await lease_backend.get("s")).record
    assert [t.fencing_token for t in got.history] == [1, 2, 3]


async def test_delete_waits_for_every_slot_and_tokens_go_on_above(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("sd", "a", 5.0, None, 3)
    b = await lease_backend.acquire("sd", "b", 5.0, None, 3)
    await lease_backend.release("sd", "b", b.record.fencing_token)
    with pytest.raises(LeaseHeld):  # "a" still holds a slot, whichever slot the record shows
        await lease_backend.delete("sd")
    await lease_backend.release("sd", "a", a.record.fencing_token)
    await lease_backend.delete("sd")
    again = await lease_backend.acquire("sd", "c", 5.0, None, 3)
    assert again.record.fencing_token > max(a.record.fencing_token, b.record.fencing_token)


async def test_a_semaphore_key_is_not_transferred(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("st", "a", 5.0, None, 2)
    with pytest.raises(LimitMismatch):
        await lease_backend.transfer("st", "z")  # an operator's
    with pytest.raises((LimitMismatch, LeaseLost)):
        await lease_backend.transfer("st", "z", "a", a.record.fencing_token)  # the holder's
    still = await lease_backend.get("st")
    assert held_by(still) == ["a"] and still.record.successor is None


async def test_a_semaphore_acquire_waits_for_the_successor_too(
    lease_backend: LeaseBackend,
) -> None:
    """Rule "transfer": for one ttl only the successor may acquire; asking for a
    limit is no way around it (nor for an admin's acquire)."""
    a = await lease_backend.acquire("kt", "a", 5.0)
    await lease_backend.transfer("kt", "b", "a", a.record.fencing_token)
    for may_change_limit in (False, True):
        with pytest.raises(LeaseHeld) as err:
            await lease_backend.acquire("kt", "c", 5.0, None, 2, may_change_limit)
        assert "handed to 'b'" in str(err.value)
    still = await lease_backend.get("kt")
    assert still.record.successor == "b" and not still.held and not still.record.slots
    b = await lease_backend.acquire("kt", "b", 5.0, None, 2)  # the successor may, with a limit
    assert b.record.holder == "b" and b.record.successor is None
    assert "successor" not in b.to_public()


async def test_a_key_back_from_a_semaphore_names_no_old_successor(
    lease_backend: LeaseBackend,
) -> None:
    """A successor that did not come is forgotten by the next term, whatever its
    limit: a later plain holder's renew is not refused as "being handed"."""
    a = await lease_backend.acquire("kb", "a", SHORT)
    await lease_backend.transfer("kb", "b", "a", a.record.fencing_token)
    deadline = time.monotonic() + 15.0
    while True:  # the successor's window (one ttl) passes: anyone may acquire
        try:
            c = await lease_backend.acquire("kb", "c", 5.0, None, 2)
            break
        except LeaseHeld:
            assert time.monotonic() < deadline, "the successor's window never ended"
            await asyncio.sleep(0.02)
    assert c.record.successor is None and "successor" not in c.to_public()
    await lease_backend.release("kb", "c", c.record.fencing_token)
    d = await lease_backend.acquire("kb", "d", 5.0)  # limit 1 again: a plain lease
    assert set(d.to_public()) == PLAIN_FIELDS
    renewed = await lease_backend.renew("kb", "d", d.record.fencing_token, 5.0)
    assert renewed.held and renewed.record.successor is None
    assert (await lease_backend.get("kb")).record.successor is None
