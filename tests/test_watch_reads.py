"""What the watch hub reads: the changed keys when told them, everything watched when not.

Example of what is held here: over 3,000 watched keys, one renewal costs the
hub one ``get`` and no listing; a backend that cannot say which keys changed
makes it list what the streams have read; a stream's replay starts after one
page, not after the prefix is read. Reads are counted on an in-memory backend
(``Counted``) that can claim change notification (as PostgreSQL's LISTEN
does) or withhold the keys (as a backend that cannot tell them).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.change_signal import MAX_KEYS, Changes
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import Capabilities
from leaderelection_service.subscription import Subscription
from leaderelection_service.watch_hub import PAGE, WatchHub

KEYS = 3000


class Counted:
    """``CasLeases`` over a memory store, counting ``get`` and ``list`` calls."""

    def __init__(self, inner: CasLeases, *, notifying: bool = True, tells_keys: bool = True):
        self.inner = inner
        self.capabilities = Capabilities(shared_across_hosts=False, change_notification=notifying)
        self.tells_keys = tells_keys
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, key: str) -> LeaseView:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]:
        self.calls["list"] += 1
        return await self.inner.list(prefix, after, limit)

    async def wait_for_change(self, timeout: float) -> frozenset[str] | None:
        keys = await self.inner.wait_for_change(timeout)
        return keys if self.tells_keys else None


async def fleet(count: int = KEYS) -> CasLeases:
    leases = CasLeases(MemoryStore())
    for n in range(count):
        await leases.acquire(f"k{n:05d}", "a", 600)
    await leases.wait_for_change(0)  # the fleet's writes are not news to the hub
    return leases


async def replay(hub: WatchHub, sub: Subscription) -> int:
    after, count = None, 0
    while True:
        page = await hub.read_page(sub, lambda after=after: hub.backend.list("k", after, PAGE))
        count += len(page)
        if len(page) < PAGE:
            hub.replayed(sub)
            return count
        after = page[-1].record.key


async def next_event(sub: Subscription, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        event = await sub.get()
    assert event is not None, sub.reason
    return event


async def test_a_told_change_costs_one_get_and_no_listing() -> None:
    leases = await fleet()
    backend = Counted(leases)
    hub = WatchHub(backend, poll_interval=30)  # type: ignore[arg-type]
    sub = hub.subscribe(prefix="k")
    try:
        assert await replay(hub, sub) == KEYS
        backend.calls.clear()
        lease = await leases.get("k01234")
        await leases.release("k01234", "a", lease.record.fencing_token)
        event = await next_event(sub)
        assert (event.type, event.key) == ("released", "k01234")
        assert backend.calls == Counter(get=1)
        assert hub.full_reads == 0
    finally:
        await hub.close()


async def test_a_lapse_costs_one_get_of_that_key() -> None:
    leases = await fleet(50)
    backend = Counted(leases)
    hub = WatchHub(backend, poll_interval=30)  # type: ignore[arg-type]
    await leases.acquire("k99999", "b", 0.3)
    await leases.wait_for_change(0)  # told before anyone watched: the replay has it
    sub = hub.subscribe(prefix="k")
    try:
        await replay(hub, sub)
        backend.calls.clear()
        event = await next_event(sub)
        assert (event.type, event.key) == ("expired", "k99999")
        assert backend.calls == Counter(get=1)
    finally:
        await hub.close()


async def test_without_the_keys_the_hub_lists_what_the_streams_have_read() -> None:
    leases = await fleet()
    backend = Counted(leases, tells_keys=False)
    hub = WatchHub(backend, poll_interval=30)  # type: ignore[arg-type]
    sub = hub.subscribe(prefix="k")
    try:
        await replay(hub, sub)
        reads = hub.full_reads
        backend.calls.clear()
        await leases.acquire("k00000x", "b", 60)  # a new key, between two replayed ones
        event = await next_event(sub)
        assert (event.type, event.key) == ("acquired", "k00000x")
        assert hub.full_reads > reads
        assert backend.calls["list"] >= -(-KEYS // PAGE)  # every page of the prefix
    finally:
        await hub.close()


async def test_another_processes_write_is_found_by_the_poll() -> None:
    """File and GCS stores: only this process's writes are told; the poll finds the rest."""
    store = MemoryStore()
    here, elsewhere = CasLeases(store), CasLeases(store)
    for n in range(1500):
        await here.acquire(f"k{n:05d}", "a", 600)
    hub = WatchHub(here, poll_interval=0.05)
    sub = hub.subscribe(prefix="k")
    try:
        await replay(hub, sub)
        lease = await elsewhere.get("k00700")
        await elsewhere.release("k00700", "a", lease.record.fencing_token)
        await elsewhere.acquire("k00700a", "c", 60)
        got = {(e.type, e.key) for e in [await next_event(sub), await next_event(sub)]}
        assert got == {("released", "k00700"), ("acquired", "k00700a")}
    finally:
        await hub.close()


async def test_a_watch_over_many_keys_is_live_after_its_first_page() -> None:
    leases = await fleet()
    backend = Counted(leases)
    hub = WatchHub(backend, poll_interval=30)  # type: ignore[arg-type]
    sub = hub.subscribe(prefix="k")
    try:
        first = await hub.read_page(sub, lambda: backend.list("k", None, PAGE))
        assert len(first) == PAGE and backend.calls == Counter(list=1)  # not the whole prefix
        # Live already: a change to a key the replay has read arrives as an event ...
        await leases.acquire("k00010a", "b", 60)
        assert (await next_event(sub)).key == "k00010a"
        # ... and a key it has not reached yet is left to the replay (no queued flood).
        await leases.acquire("k02999a", "b", 60)
        lease = await leases.get("k00001")
        await leases.release("k00001", "a", lease.record.fencing_token)
        assert (await next_event(sub)).key == "k00001"
        rest = await hub.read_page(sub, lambda: backend.list("k", first[-1].record.key, KEYS))
        assert "k02999a" in {v.record.key for v in rest} and sub.queue.empty()
    finally:
        await hub.close()


async def test_a_signal_says_unknown_when_the_keys_pile_up() -> None:
    changes = Changes()
    changes.fire(["a"])
    changes.fire(["b"])
    assert await changes.wait(0) == {"a", "b"}
    assert await changes.wait(0) == frozenset()  # nothing since
    changes.fire(f"k{n}" for n in range(MAX_KEYS + 1))
    assert await changes.wait(0) is None
    changes.fire(["a"])
    changes.fire()  # a LISTEN reconnect: which keys is not known
    assert await changes.wait(0) is None


async def test_a_listing_that_no_longer_finds_a_key_tells_it_deleted() -> None:
    """Rule "delete" on the listing path: a key the streams were sent that a read
    of their ranges does not find is gone."""
    leases = await fleet(1500)
    backend = Counted(leases, tells_keys=False)
    hub = WatchHub(backend, poll_interval=30)  # type: ignore[arg-type]
    sub = hub.subscribe(prefix="k")
    try:
        await replay(hub, sub)
        lease = await leases.get("k01200")
        await leases.release("k01200", "a", lease.record.fencing_token)
        assert (await next_event(sub)).type == "released"
        await leases.delete("k01200")
        gone = await next_event(sub)
        assert (gone.type, gone.key) == ("deleted", "k01200")
        assert hub.full_reads >= 2 and sub.queue.empty()
    finally:
        await hub.close()
