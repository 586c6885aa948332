"""The lease contract (docs/contract.md, "Operations"), once, against every backend.

Each backend in ``support.backends.BACKENDS`` runs every test here against a
real store: files on disk, a real PostgreSQL, a real GCS emulator process.
Expiry is waited for by polling with a deadline, on the backend's own clock.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url

from leaderelection_service.lease_errors import (
    BackendUnavailable,
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
)
from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend
from support.procs import free_port

SHORT = 0.3  # seconds; the backends take any ttl, the HTTP layer enforces bounds


async def wait_expired(backend: LeaseBackend, key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (await backend.get(key)).held:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} did not expire within {timeout} s")


async def test_first_acquire_starts_term_one(lease_backend: LeaseBackend) -> None:
    view = await lease_backend.acquire("k", "a", 5.0)
    rec = view.to_public()
    assert rec["key"] == "k" and rec["holder"] == "a"
    assert rec["fencing_token"] == 1
    assert rec["held"] is True
    assert rec["transitions"] == 0
    assert rec["ttl"] == 5.0
    assert rec["acquired_at"] == rec["renewed_at"]
    assert view.record.expires_at > view.record.acquired_at


async def test_acquire_held_by_other_is_lease_held_with_record(lease_backend: LeaseBackend) -> None:
    await lease_backend.acquire("k", "a", 5.0)
    with pytest.raises(LeaseHeld) as err:
        await lease_backend.acquire("k", "b", 5.0)
    assert err.value.lease is not None
    assert err.value.lease.record.holder == "a"
    assert err.value.lease.held


async def test_acquire_by_holder_is_idempotent_and_extends(lease_backend: LeaseBackend) -> None:
    first = await lease_backend.acquire("k", "a", 2.0)
    again = await lease_backend.acquire("k", "a", 4.5)
    assert again.record.fencing_token == first.record.fencing_token
    assert again.record.acquired_at == first.record.acquired_at
    assert again.record.expires_at > first.record.expires_at
    assert again.record.ttl == 4.5


async def test_ttl_keeps_millisecond_precision(lease_backend: LeaseBackend) -> None:
    view = await lease_backend.acquire("k", "a", 1.5)
    assert view.record.ttl == 1.5
    span = (view.record.expires_at - view.record.renewed_at).total_seconds()
    assert abs(span - 1.5) < 0.002


async def test_renew_extends_and_keeps_token(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 2.0)
    r = await lease_backend.renew("k", "a", a.record.fencing_token, 3.0)
    assert r.record.fencing_token == a.record.fencing_token
    assert r.record.renewed_at >= a.record.renewed_at
    assert r.record.expires_at > a.record.expires_at
    assert r.record.ttl == 3.0
    kept = await lease_backend.renew("k", "a", a.record.fencing_token, None)
    assert kept.record.ttl == 3.0


async def test_renew_by_other_holder_or_token_is_lease_lost(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 5.0)
    with pytest.raises(LeaseLost) as err:
        await lease_backend.renew("k", "b", a.record.fencing_token, 5.0)
    assert err.value.lease is not None and err.value.lease.record.holder == "a"
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", a.record.fencing_token + 1, 5.0)


async def test_renew_unknown_key_is_not_found(lease_backend: LeaseBackend) -> None:
    with pytest.raises(LeaseNotFound):
        await lease_backend.renew("never", "a", 1, 5.0)
    with pytest.raises(LeaseNotFound):
        await lease_backend.release("never", "a", 1)
    with pytest.raises(LeaseNotFound):
        await lease_backend.get("never")


async def test_renew_after_expiry_succeeds_while_nobody_took_it(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    await wait_expired(lease_backend, "k")
    r = await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
    assert r.held and r.record.fencing_token == a.record.fencing_token


async def test_state_is_decided_on_the_deciding_clock(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    assert a.to_public()["state"] == "held"
    await wait_expired(lease_backend, "k")
    lapsed = (await lease_backend.get("k")).to_public()
    assert (lapsed["held"], lapsed["state"]) == (False, "expired")
    back = await lease_backend.renew("k", "a", a.record.fencing_token, 60.0)
    assert back.to_public()["state"] == "held"
    rel = await lease_backend.release("k", "a", a.record.fencing_token)
    assert (rel.to_public()["held"], rel.to_public()["state"]) == (False, "released")
    listed = await lease_backend.list("k", None, 10)
    assert [v.to_public()["state"] for v in listed] == ["released"]


async def test_takeover_after_expiry_starts_new_term(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    await wait_expired(lease_backend, "k")
    b = await lease_backend.acquire("k", "b", 5.0)
    assert b.record.fencing_token == a.record.fencing_token + 1
    assert b.record.holder == "b" and b.record.transitions == 1
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
    with pytest.raises(LeaseLost):
        await lease_backend.release("k", "a", a.record.fencing_token)


async def test_release_frees_at_once_and_keeps_token_counter(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 60.0)
    rel = await lease_backend.release("k", "a", a.record.fencing_token)
    assert rel.held is False
    assert rel.record.fencing_token == a.record.fencing_token
    assert (await lease_backend.get("k")).held is False
    b = await lease_backend.acquire("k", "b", 5.0)
    assert b.record.fencing_token == a.record.fencing_token + 1
    assert b.record.transitions == 1


async def test_release_twice_is_success(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 60.0)
    first = await lease_backend.release("k", "a", a.record.fencing_token)
    second = await lease_backend.release("k", "a", a.record.fencing_token)
    assert second.held is False
    assert second.record.fencing_token == first.record.fencing_token


async def test_release_by_other_is_lease_lost_and_changes_nothing(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 60.0)
    with pytest.raises(LeaseLost):
        await lease_backend.release("k", "b", a.record.fencing_token)
    with pytest.raises(LeaseLost):
        await lease_backend.release("k", "a", a.record.fencing_token + 5)
    now = await lease_backend.get("k")
    assert now.held and now.record.holder == "a"
    assert now.record.expires_at == a.record.expires_at


async def test_renew_after_release_is_lease_lost(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", 60.0)
    await lease_backend.release("k", "a", a.record.fencing_token)
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)


async def test_same_holder_reacquiring_after_release_gets_new_term(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 60.0)
    await lease_backend.release("k", "a", a.record.fencing_token)
    again = await lease_backend.acquire("k", "a", 60.0)
    assert again.record.fencing_token == a.record.fencing_token + 1
    assert again.record.transitions == 0  # the holder did not change


async def test_tokens_strictly_increase_over_many_terms(lease_backend: LeaseBackend) -> None:
    tokens = []
    for i in range(12):
        holder = f"h{i % 3}"
        v = await lease_backend.acquire("k", holder, 60.0)
        tokens.append(v.record.fencing_token)
        await lease_backend.release("k", holder, v.record.fencing_token)
    assert tokens == sorted(set(tokens))
    assert tokens == list(range(1, 13))


async def test_concurrent_acquire_has_one_winner(lease_backend: LeaseBackend) -> None:
    async def attempt(i: int) -> str | None:
        try:
            await lease_backend.acquire("hot", f"h{i}", 30.0)
            return f"h{i}"
        except LeaseHeld:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(20)))
    winners = [r for r in results if r]
    assert len(winners) == 1
    assert (await lease_backend.get("hot")).record.holder == winners[0]


async def test_concurrent_calls_of_the_holder_all_succeed(lease_backend: LeaseBackend) -> None:
    """A holder's own concurrent renewals and acquires (retries) never fail each other."""
    a = await lease_backend.acquire("hot", "a", 30.0)
    token = a.record.fencing_token
    calls = [lease_backend.renew("hot", "a", token, 30.0) for _ in range(10)]
    calls += [lease_backend.acquire("hot", "a", 30.0) for _ in range(10)]
    views = await asyncio.gather(*calls)
    assert {v.record.fencing_token for v in views} == {token}
    assert all(v.held for v in views)


async def test_list_is_ordered_filtered_and_paginated(lease_backend: LeaseBackend) -> None:
    for key in ["b.2", "a.1", "b.1", "c", "b.3", "b-x"]:
        await lease_backend.acquire(key, "h", 60.0)
    all_keys = [v.record.key for v in await lease_backend.list("", None, 100)]
    assert all_keys == sorted(all_keys) == ["a.1", "b-x", "b.1", "b.2", "b.3", "c"]
    assert [v.record.key for v in await lease_backend.list("b.", None, 100)] == [
        "b.1",
        "b.2",
        "b.3",
    ]
    page1 = await lease_backend.list("b", None, 2)
    assert [v.record.key for v in page1] == ["b-x", "b.1"]
    page2 = await lease_backend.list("b", page1[-1].record.key, 2)
    assert [v.record.key for v in page2] == ["b.2", "b.3"]
    assert await lease_backend.list("b", "b.3", 2) == []
    assert await lease_backend.list("zzz", None, 10) == []


LONGEST = 128  # the contract's longest key


async def test_longest_keys_acquire_renew_lookup_and_release(lease_backend: LeaseBackend) -> None:
    key = "team-a." + "z" * (LONGEST - len("team-a."))
    a = await lease_backend.acquire(key, "a", 5.0)
    assert a.record.key == key and a.record.fencing_token == 1
    r = await lease_backend.renew(key, "a", a.record.fencing_token, 6.0)
    assert r.record.fencing_token == 1 and r.record.ttl == 6.0
    assert (await lease_backend.get(key)).record.holder == "a"
    with pytest.raises(LeaseHeld):
        await lease_backend.acquire(key, "b", 5.0)
    assert [v.record.key for v in await lease_backend.list("team-a.", None, 10)] == [key]
    released = await lease_backend.release(key, "a", 1)
    assert not released.held
    b = await lease_backend.acquire(key, "b", 5.0)
    assert b.record.fencing_token == 2


async def test_keys_of_every_length_list_in_key_order(lease_backend: LeaseBackend) -> None:
    # Around the lengths where a backend might change how it names a key
    # (the file backend: hex up to 124 characters, another form above), and
    # keys that differ only in their last character or in case.
    keys = [("k" * n)[: n - 1] + c for n in (1, 2, 123, 124, 125, 126, 127, 128) for c in "Aa9"]
    keys += ["k" * 127 + c for c in "-_."] + ["K" * 128, "k" * 124 + "." + "0" * 3]
    for key in keys:
        await lease_backend.acquire(key, "h", 60.0)
    listed = [v.record.key for v in await lease_backend.list("", None, 1000)]
    assert listed == sorted(set(keys))
    assert [v.record.key for v in await lease_backend.list("k" * 124, None, 1000)] == sorted(
        k for k in keys if k.startswith("k" * 124)
    )
    # Pages that begin after a longest key, and after the longest hex-named one.
    for after in ("k" * 123 + "a", "k" * 127 + "-"):
        page = [v.record.key for v in await lease_backend.list("k", after, 4)]
        assert page == [k for k in sorted(set(keys)) if k.startswith("k") and k > after][:4]
        assert len(page) == 4
    for key in keys:
        assert (await lease_backend.get(key)).record.key == key


async def test_holder_with_quotes_and_sql_round_trips(lease_backend: LeaseBackend) -> None:
    holder = 'x\'); DROP TABLE leases; -- "quoted" ; SELECT * FROM pg_user ✓'
    view = await lease_backend.acquire("k", holder, 5.0)
    assert view.record.holder == holder
    assert (await lease_backend.get("k")).record.holder == holder


def unreachable_twin(url: str, tmp_path: Path) -> str | None:
    """A URL of the same kind whose store is not there (None: the kind has no such state).

    memory is in the process; an SQLite file is created on open, so only its
    reachable half is checked here.
    """
    if url.startswith("file:"):
        return (tmp_path / "never-created").as_uri()  # removed after opening, below
    if url.startswith("gs://"):
        return "gs://le-no-such-bucket-" + secrets.token_hex(4) + "/leases"
    if url.startswith(("postgresql", "mariadb", "mysql")):
        return make_url(url).set(port=free_port()).render_as_string(hide_password=False)
    return None


async def test_ping(lease_backend: LeaseBackend, backend_url: str, tmp_path: Path) -> None:
    assert await lease_backend.ping() is None
    assert lease_backend.description
    twin_url = unreachable_twin(backend_url, tmp_path)
    if twin_url is None:
        return
    (tmp_path / "never-created").mkdir()
    twin = open_backend(twin_url, Settings(backend_url=twin_url))
    try:
        shutil.rmtree(tmp_path / "never-created")  # the file backend made its directory
        with pytest.raises(BackendUnavailable):
            await twin.ping()
    finally:
        await twin.close()


async def test_refusals_say_why_in_the_same_words(lease_backend: LeaseBackend) -> None:
    """Every backend words each refusal alike (a client may show the message)."""
    first = await lease_backend.acquire("k", "a", 5.0)
    with pytest.raises(LeaseHeld, match=r"^lease 'k' is held by another holder$"):
        await lease_backend.acquire("k", "b", 5.0)
    await lease_backend.release("k", "a", first.record.fencing_token)
    with pytest.raises(LeaseLost, match=r"^lease 'k' was released$"):
        await lease_backend.renew("k", "a", first.record.fencing_token, None)
    await lease_backend.acquire("k", "b", 5.0)
    stale = r"^lease 'k' is no longer held by this holder with this fencing token$"
    with pytest.raises(LeaseLost, match=stale):
        await lease_backend.renew("k", "a", first.record.fencing_token, None)
    with pytest.raises(LeaseLost, match=stale):
        await lease_backend.release("k", "a", first.record.fencing_token)
    for call in (
        lambda: lease_backend.get("nope"),
        lambda: lease_backend.renew("nope", "a", 1, None),
        lambda: lease_backend.release("nope", "a", 1),
    ):
        with pytest.raises(LeaseNotFound, match=r"^lease 'nope' was never acquired$"):
            await call()


async def test_value_is_set_by_acquire_and_replaced_by_renew_in_the_same_term(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 60.0, "10.0.0.7:8443")
    assert a.to_public()["value"] == "10.0.0.7:8443"
    kept = await lease_backend.renew("k", "a", a.record.fencing_token, None)
    assert kept.record.value == "10.0.0.7:8443"  # absent: unchanged
    new = await lease_backend.renew("k", "a", a.record.fencing_token, None, "v2 ✓ \"'; --")
    assert new.record.fencing_token == a.record.fencing_token  # no new term
    assert (await lease_backend.get("k")).to_public()["value"] == "v2 ✓ \"'; --"
    again = await lease_backend.acquire("k", "a", 60.0)  # the holder's own acquire keeps it
    assert again.record.value == "v2 ✓ \"'; --"
    assert again.record.history[-1].value == "v2 ✓ \"'; --"
    rel = await lease_backend.release("k", "a", a.record.fencing_token)
    assert rel.record.value == "v2 ✓ \"'; --"
    b = await lease_backend.acquire("k", "b", 60.0)
    assert b.record.value is None  # a new term starts without the last one's value
    ended = [t.to_public() for t in (await lease_backend.get("k")).record.history]
    assert [(t["fencing_token"], t["value"]) for t in ended] == [(1, "v2 ✓ \"'; --"), (2, None)]


async def test_value_of_the_largest_size_round_trips(lease_backend: LeaseBackend) -> None:
    big = "é" * 2048  # 4,096 bytes of UTF-8
    a = await lease_backend.acquire("k", "a", 60.0, big)
    assert (await lease_backend.get("k")).record.value == big
    await lease_backend.renew("k", "a", a.record.fencing_token, None, "x" * 4096)
    assert (await lease_backend.get("k")).record.value == "x" * 4096


async def test_announced_value_is_kept_until_the_value_changes(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 60.0, "one")
    assert a.record.announced is False
    told = await lease_backend.renew("k", "a", a.record.fencing_token, None, "two", True)
    assert told.record.announced is True
    plain = await lease_backend.renew("k", "a", a.record.fencing_token, 30.0)
    assert (plain.record.value, plain.record.announced) == ("two", True)
    quiet = await lease_backend.renew("k", "a", a.record.fencing_token, None, "three")
    assert (quiet.record.value, quiet.record.announced) == ("three", False)


async def test_revoke_ends_the_term_and_the_holders_renew_is_lease_lost(
    lease_backend: LeaseBackend,
) -> None:
    a = await lease_backend.acquire("k", "a", 60.0, "addr")
    rev = await lease_backend.revoke("k")
    assert (rev.held, rev.to_public()["state"]) == (False, "revoked")
    assert rev.record.fencing_token == a.record.fencing_token and rev.record.value == "addr"
    with pytest.raises(LeaseLost, match="was revoked"):
        await lease_backend.renew("k", "a", a.record.fencing_token, 60.0)
    again = await lease_backend.revoke("k")  # nothing left to end: no write
    assert again.record.revision == rev.record.revision and again.state == "revoked"
    b = await lease_backend.acquire("k", "b", 60.0)
    assert b.record.fencing_token == a.record.fencing_token + 1 and b.state == "held"
    ended = [(t.fencing_token, t.ended_by) for t in (await lease_backend.get("k")).record.history]
    assert ended == [(1, "revoked"), (2, None)]
    with pytest.raises(LeaseNotFound):
        await lease_backend.revoke("never")


async def test_revoke_of_a_lapsed_lease_stops_its_late_renewal(lease_backend: LeaseBackend) -> None:
    a = await lease_backend.acquire("k", "a", SHORT)
    await wait_expired(lease_backend, "k")
    assert (await lease_backend.revoke("k")).state == "revoked"
    with pytest.raises(LeaseLost):
        await lease_backend.renew("k", "a", a.record.fencing_token, 5.0)
