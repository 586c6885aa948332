"""The lease gauges of /metrics: right after acquire, release and expiry, without a
listing of the backend per scrape; other replicas' writes within the stated age.

The rules run on the in-memory store with the gauges' clock injected; the
service tests run real processes on one file directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.lease_gauges import LeaseGauges
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.records import LeaseView
from support.procs import ServiceProcess, wait_until


class Counting(CasLeases):
    """The real lease rules on the memory store, counting listings."""

    lists = 0

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]:
        self.lists += 1
        return await super().list(prefix, after, limit)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_own_writes_and_expiry_count_at_once_without_a_listing() -> None:
    backend, clock = Counting(MemoryStore()), Clock()
    gauges = LeaseGauges(backend, refresh=10, clock=clock)
    for key in ("a", "b"):
        gauges.observe(await backend.acquire(key, "h1", 60))  # before any listing: ignored
    first = await gauges.counts(top=5)
    assert first is not None and (first.held, first.released, first.expired) == (2, 0, 0)
    assert backend.lists == 1

    short = await backend.acquire("c", "h1", 5)
    gauges.observe(short)
    a = await backend.get("a")
    gauges.observe(await backend.release("a", "h1", a.record.fencing_token))
    gauges.observe(await backend.acquire("a", "h2", 60))  # a new holder: a transition
    now = await gauges.counts(top=5)
    assert now is not None and (now.held, now.released, now.expired) == (3, 0, 0)
    assert ("a", 1) in now.top
    clock.now += 6  # c's 5 s have run out on the gauges' clock: expired, nothing read
    later = await gauges.counts(top=5)
    assert later is not None and (later.held, later.released, later.expired) == (2, 0, 1)
    b = await backend.get("b")
    gauges.observe(await backend.release("b", "h1", b.record.fencing_token))
    last = await gauges.counts(top=5)
    assert last is not None and (last.held, last.released, last.expired) == (1, 1, 1)
    assert backend.lists == 1  # every scrape since the first answered from memory
    await gauges.close()


async def test_other_writers_show_after_the_refresh_and_old_data_is_never_served() -> None:
    store, clock = MemoryStore(), Clock()
    backend, other = Counting(store), CasLeases(store)  # other: another replica
    gauges = LeaseGauges(backend, refresh=10, clock=clock)
    assert (await gauges.counts(top=5)) is not None
    await other.acquire("elsewhere", "h", 600)
    clock.now += 5
    young = await gauges.counts(top=5)
    assert young is not None and young.held == 0 and backend.lists == 1  # within refresh
    clock.now += 6  # older than refresh: this scrape answers, a listing starts behind it
    await gauges.counts(top=5)
    assert gauges._task is not None
    await gauges._task
    seen = await gauges.counts(top=5)
    assert seen is not None and seen.held == 1 and backend.lists == 2
    await other.acquire("later", "h", 600)
    clock.now += 25  # older than twice refresh: the scrape waits for a new listing
    waited = await gauges.counts(top=5)
    assert waited is not None and waited.held == 2 and waited.age == 0
    await gauges.close()


async def test_top_keys_are_named_and_the_rest_summed() -> None:
    backend = CasLeases(MemoryStore())
    for key, holders in {"k1": "abc", "k2": "ab", "k3": "ab", "k4": "a"}.items():
        for h in holders:
            view = await backend.acquire(key, h, 60)
            await backend.release(key, h, view.record.fencing_token)
    gauges = LeaseGauges(backend, refresh=10)
    counts = await gauges.counts(top=2)
    assert counts is not None
    assert counts.top == [("k1", 2), ("k2", 1)]  # ties in key order
    assert counts.other == 1  # k3 1, k4 0
    await gauges.close()


def gauge(http: httpx.Client, state: str) -> int:
    text = http.get("/metrics").text
    found = re.search(rf'^leaderelection_leases{{state="{state}"}} (\S+)$', text, re.M)
    assert found, text[-500:]
    return int(float(found.group(1)))


def test_the_service_gauges_follow_acquire_release_expiry_and_other_replicas(
    tmp_path: Path,
) -> None:
    url = (tmp_path / "data").as_uri()
    args = ("--metrics-refresh-interval", "0.5")
    with (
        ServiceProcess(url, extra_args=args, log_path=tmp_path / "a.log") as a,
        ServiceProcess(url, extra_args=args, log_path=tmp_path / "b.log") as b,
        httpx.Client(base_url=a.url, timeout=10) as http,
        httpx.Client(base_url=b.url, timeout=10) as other,
    ):
        assert gauge(http, "held") == 0
        lease = http.post("/v1/leases/x/acquire", json={"holder": "h", "ttl": 1}).json()
        assert gauge(http, "held") == 1  # this process's write: at once
        wait_until(lambda: gauge(http, "expired") == 1, 10, what="the lapse counted")
        assert gauge(http, "held") == 0
        lease = http.post("/v1/leases/x/acquire", json={"holder": "h", "ttl": 60}).json()
        r = http.post(
            "/v1/leases/x/release",
            json={"holder": "h", "fencing_token": lease["fencing_token"]},
        )
        assert r.status_code == 200
        assert (gauge(http, "held"), gauge(http, "released")) == (0, 1)
        # Written through the other replica: seen within twice the refresh interval.
        assert other.post("/v1/leases/y/acquire", json={"holder": "h", "ttl": 60}).is_success
        wait_until(lambda: gauge(http, "held") == 1, 10, what="the other replica's write")


async def test_a_semaphore_key_is_held_while_any_slot_is() -> None:
    backend, clock = Counting(MemoryStore()), Clock()
    gauges = LeaseGauges(backend, refresh=10, clock=clock)
    assert await gauges.counts(top=5) is not None  # the first listing (empty)
    long = await backend.acquire("s", "long", 60, None, 3)
    gauges.observe(long)
    gauges.observe(await backend.acquire("s", "short", 5, None, 3))  # the last write: 5 s
    clock.now += 6  # the slot last written lapsed; the other still holds the key
    held = await gauges.counts(top=5)
    assert held is not None and (held.held, held.released, held.expired) == (1, 0, 0)
    s = (await backend.get("s")).record
    for slot in s.slots:
        gauges.observe(await backend.release("s", slot.holder, slot.fencing_token))
    done = await gauges.counts(top=5)
    assert done is not None and (done.held, done.released, done.expired) == (0, 1, 0)
    await gauges.close()
