"""The client's watch streams and the follower that waits on them, against a real service.

The follower scenarios run on both electors (the ``electors`` fixture).

Handoff times are printed by bench/handoff.py; here the bounds only tell the
watch stream apart from polling (the follower's ``retry`` is 10 s, and its
jittered wait never drops below 7.5 s).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leaderelection import AsyncLeaseClient, Config, InvalidRequest, LeaseClient, LeaseEvent
from leaderelection.watch import SseParser
from support.electors import Electors
from support.procs import ServiceProcess, wait_until

SLOW_RETRY = Config(term=10, renew=3, retry=10)
HANDOFF_BOUND = 5.0  # far below the 7.5 s a polling follower waits at least


def streams(url: str) -> float:
    """The service's open watch streams (its ``leaderelection_watch_subscribers`` gauge)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leaderelection_watch_subscribers":
                return sample.value
    raise AssertionError("no leaderelection_watch_subscribers in /metrics")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("client-watch")
    with ServiceProcess((tmp / "data").as_uri(), log_path=tmp / "service.log") as s:
        yield s


@pytest.fixture
def client(svc: ServiceProcess) -> Iterator[LeaseClient]:
    with LeaseClient(svc.url) as c:
        yield c


def test_parser_follows_the_wire_format() -> None:
    p = SseParser()
    lines = [": keep-alive", "retry: 1000", "", "event: released", "id: k:4", "data: {", "data: }"]
    assert [p.feed(line) for line in lines] == [None] * len(lines)
    assert p.feed("") == ("released", "{\n}", "k:4")
    assert p.feed("data:x") is None and p.feed("") == ("message", "x", None)


def test_watch_yields_typed_events_in_order(client: LeaseClient) -> None:
    lease = client.acquire("cw.order", "a", 30)
    with client.watch("cw.order") as events:
        it = iter(events)
        first = next(it)
        assert isinstance(first, LeaseEvent)
        assert (first.type, first.replay, first.lease.holder) == ("acquired", True, "a")
        client.release("cw.order", "a", lease.fencing_token)
        released = next(it)
        assert (released.type, released.replay, released.free) == ("released", False, True)
        client.acquire("cw.order", "b", 30)
        taken = next(it)
        assert (taken.type, taken.lease.holder, taken.lease.fencing_token) == ("acquired", "b", 2)
        assert first.version < released.version < taken.version
    with client.watch("cw.order", last_event_id=taken.id) as events:
        client.renew("cw.order", "b", 2, 30)
        client.release("cw.order", "b", 2)
        after = next(iter(events))  # no replay: it had that version; no renewal: not asked
        assert (after.type, after.replay) == ("released", False)


def test_watch_a_prefix_with_renewals(client: LeaseClient) -> None:
    with client.watch(prefix="cw.pre.", renewed=True) as events:
        it = iter(events)
        lease = client.acquire("cw.pre.x", "a", 30)
        assert next(it).type == "acquired"
        client.renew("cw.pre.x", "a", lease.fencing_token, 30)
        renewed = next(it)
        assert (renewed.type, renewed.key) == ("renewed", "cw.pre.x")


def test_closing_from_another_thread_ends_a_blocked_iteration(client: LeaseClient) -> None:
    events = client.watch("cw.idle").open()
    got: list[LeaseEvent] = []
    reader = threading.Thread(target=lambda: got.extend(events))
    reader.start()
    time.sleep(0.2)  # let it block in the read; nothing will arrive
    events.close()
    reader.join(5)
    assert not reader.is_alive() and got == []


def test_refused_stream_raises_the_mapped_error(client: LeaseClient) -> None:
    with pytest.raises(InvalidRequest):
        client.watch("cw.bad", last_event_id="garbage").open()
    with pytest.raises(InvalidRequest):
        client.watch("../etc")
    with pytest.raises(InvalidRequest):
        client.watch("a", prefix="b")


async def test_async_watch_yields_typed_events(svc: ServiceProcess) -> None:
    async with AsyncLeaseClient(svc.url) as client:
        async with client.watch(prefix="cw.async.") as events:
            it = aiter(events)
            lease = await client.acquire("cw.async.k", "a", 30)
            first = await asyncio.wait_for(anext(it), 10)
            await client.release("cw.async.k", "a", lease.fencing_token)
            second = await asyncio.wait_for(anext(it), 10)
        assert [(e.type, e.key) for e in (first, second)] == [
            ("acquired", "cw.async.k"),
            ("released", "cw.async.k"),
        ]


def test_follower_takes_over_at_once_after_a_graceful_release(
    electors: Electors, svc: ServiceProcess, client: LeaseClient
) -> None:
    key = f"cw.handoff-{electors.kind}"
    # the leader does not watch: the one stream counted below is the follower's
    leader = electors.new(svc.url, key, identity="leader", config=SLOW_RETRY, watch=False)
    leader.start()
    assert leader.wait_for_leadership(10)
    took_over = threading.Event()
    follower = electors.new(svc.url, key, identity="follower", config=SLOW_RETRY,
                            on_elected=lambda me, cancel: took_over.set())  # fmt: skip
    wait_until(lambda: streams(svc.url) == 0, 10, what="no watch stream open")
    follower.start()
    try:
        # the follower was refused once and now waits on its watch stream (and
        # would otherwise wait its 7.5-10 s)
        wait_until(lambda: streams(svc.url) == 1, 10, what="the follower's watch stream")
        assert client.get(key).holder == "leader"
        started = time.monotonic()
        leader.stop()
        assert took_over.wait(HANDOFF_BOUND), "the follower did not wake on the release"
        assert time.monotonic() - started < HANDOFF_BOUND
        assert follower.is_leader and follower.lease is not None
        assert follower.lease.fencing_token == 2
    finally:
        follower.stop()


def test_follower_still_takes_over_when_its_stream_broke(
    electors: Electors, tmp_path: Path, data_dir: Path
) -> None:
    with ServiceProcess(data_dir.as_uri(), log_path=tmp_path / "svc.log") as s:
        config = Config(term=10, renew=3, retry=1)
        leader = electors.new(s.url, "cw.broken", identity="leader", config=config, watch=False)
        leader.start()
        assert leader.wait_for_leadership(10)
        took_over = threading.Event()
        follower = electors.new(s.url, "cw.broken", identity="follower", config=config,
                                on_elected=lambda me, cancel: took_over.set())  # fmt: skip
        follower.start()
        try:
            s.stop()  # the follower's stream ends; it polls and reconnects meanwhile
            s.start()
            leader.stop()
            assert took_over.wait(30), "the follower never took over"
            assert follower.lease is not None and follower.lease.holder == "follower"
        finally:
            follower.stop()
