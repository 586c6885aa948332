"""The token floor over compare-and-set stores (``token_floor.py``), interleavings forced.

The dangerous one: an acquire reads "no record", then the floor; before it
creates the record, another process creates the key, releases it and deletes
it (raising the floor past its tokens). The acquire's create then succeeds
(the key is absent again) with a token that the deleted key already had,
unless it reads the floor again after creating, as ``settled`` does. A store
wrapper runs that other process's whole cycle inside the acquire's first floor
read, through a second ``CasLeases`` on the same store (its own key locks, as
another process has). Also: the floor survives a restart (a store opened
again on the same directory, database or bucket) on every shared backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.lease_errors import BackendUnavailable, LeaseError
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings
from leaderelection_service.token_floor import floor_after, numbered


class RaceOnFloorRead:
    """A store whose next floor read first lets ``other`` run a whole life of ``key``."""

    def __init__(self, store: MemoryStore) -> None:
        self.inner = store
        self.other: CasLeases | None = None
        self.armed = False
        self.tokens: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read_floor(self) -> int:
        floor = await self.inner.read_floor()
        if self.armed and self.other is not None:
            self.armed = False
            for holder in ("x", "y", "z"):
                view = await self.other.acquire("k", holder, 5.0)
                self.tokens.append(view.record.fencing_token)
                await self.other.release("k", holder, view.record.fencing_token)
            await self.other.delete("k")
        return floor


async def test_a_key_created_and_deleted_during_an_acquire_never_shares_a_token() -> None:
    shared = MemoryStore()
    racing = RaceOnFloorRead(shared)
    mine = CasLeases(racing)  # type: ignore[arg-type]
    racing.other = CasLeases(shared)
    racing.armed = True
    view = await mine.acquire("k", "me", 5.0)
    assert racing.tokens == [1, 2, 3]  # the other process's life of k, deleted
    assert view.record.fencing_token > max(racing.tokens)
    stored = await shared.read("k")
    assert stored is not None and stored.record == view.record  # renumbered in the store too
    assert view.record.history[0].fencing_token == view.record.fencing_token
    # Checked by breaking it: with ``settled`` answering at once, this acquire got 1.


class SecondGrantBeforeSettling(RaceOnFloorRead):
    """As ``RaceOnFloorRead``; then, at the acquire's second floor read (``settled``,
    the created record not yet renumbered), a third process takes another slot."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.third: CasLeases | None = None
        self.reads = 0
        self.granted: list[int] = []

    async def read_floor(self) -> int:
        self.reads += 1
        if self.reads == 2 and self.third is not None:
            with contextlib.suppress(LeaseError):  # refused: no token given out
                view = await self.third.acquire("k", "second", 5.0, None, 3)
                self.granted.append(view.record.fencing_token)
        return await super().read_floor()


@pytest.mark.xfail(
    strict=True,
    reason="known: a grant that builds on a created record before its creator settled it "
    "keeps a deleted key's token (token_floor.settled only guards the creator)",
)
async def test_a_slot_granted_while_the_first_is_settled_never_repeats_a_token() -> None:
    """I2 (fencing): the record a racing acquire created with a deleted key's token
    is visible before ``settled`` renumbers it; no other grant may build on it."""
    shared = MemoryStore()
    racing = SecondGrantBeforeSettling(shared)
    mine = CasLeases(racing)  # type: ignore[arg-type]
    racing.other = CasLeases(shared)
    racing.third = CasLeases(shared)
    racing.armed = True
    given: list[int] = []
    with contextlib.suppress(BackendUnavailable):  # 503: the creator could not settle
        given.append((await mine.acquire("k", "me", 5.0, None, 3)).record.fencing_token)
    assert racing.tokens == [1, 2, 3]  # the other process's life of k, deleted
    given += racing.granted
    assert given, "nobody was granted a slot"
    assert not set(given) & set(racing.tokens), (given, racing.tokens)
    holders = (await CasLeases(shared).get("k")).record.slots
    assert all(s.fencing_token > max(racing.tokens) for s in holders)


def test_numbered_moves_token_revision_and_history_together() -> None:
    from datetime import UTC, datetime

    from leaderelection_service.records import LeaseRecord

    first = LeaseRecord.new_term(None, key="k", holder="a", ttl=5.0, now=datetime.now(UTC))
    moved = numbered(first, 41)
    assert (moved.fencing_token, moved.revision, moved.history[0].fencing_token) == (42, 42, 42)
    assert floor_after(moved) == 43  # above its revision: versions never go back either
    assert numbered(first, 0) is first


SHARED = ["file", "gcs", "postgres", "sqlite", "mysql"]


@pytest.fixture(params=SHARED)
def shared_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_the_floor_survives_a_restart(shared_url: str) -> None:
    settings = Settings(backend_url=shared_url)
    first = open_backend(shared_url, settings)
    try:
        last = 0
        for holder in ("a", "b", "c"):
            view = await first.acquire("k", holder, 5.0)
            last = view.record.fencing_token
            await first.release("k", holder, last)
        await first.delete("k")
    finally:
        await first.close()
    again = open_backend(shared_url, settings)  # as a restarted service would
    try:
        assert (await again.acquire("k", "d", 5.0)).record.fencing_token > last
        assert (await again.acquire("other", "d", 5.0)).record.fencing_token > last
    finally:
        await again.close()


async def test_the_hub_tells_a_delete_and_a_key_recreated_between_two_reads() -> None:
    from leaderelection_service.watch_hub import PAGE, WatchHub

    leases = CasLeases(MemoryStore())
    hub = WatchHub(leases, poll_interval=30)
    view = await leases.acquire("k", "a", 5.0)
    released = await leases.release("k", "a", view.record.fencing_token)
    await leases.wait_for_change(0)  # told before anyone watched: the replay has it
    sub = hub.subscribe(prefix="k")
    try:
        page = await hub.read_page(sub, lambda: leases.list("k", None, PAGE))
        assert [v.record for v in page] == [released.record]
        hub.replayed(sub)
        await leases.delete("k")
        again = await leases.acquire("k", "b", 5.0)
        # Deleted and acquired again: whether the hub read between the two or not.
        events = [await _next(sub), await _next(sub)]
        assert [(e.type, e.lease["fencing_token"]) for e in events] == [
            ("deleted", 1),
            ("acquired", again.record.fencing_token),
        ]
        assert events[0].version < events[1].version
        await leases.release("k", "b", again.record.fencing_token)
        await leases.delete("k")
        gone = await _next(sub)
        if gone.type == "released":  # the hub read between the release and the delete
            gone = await _next(sub)
        assert (gone.type, gone.key, gone.lease["held"]) == ("deleted", "k", False)
        assert gone.lease["state"] == "released"
        assert gone.version > events[1].version
    finally:
        await hub.close()


async def _next(sub):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(5):
        event = await sub.get()
    assert event is not None
    return event
