"""Watch streams over HTTP, against real service processes.

The event sequence acquire → release → acquire by another → expiry → takeover
is checked through one replica, and through two replicas sharing one backend
(written through one, watched through the other) for every backend that
several services may share. Waiting is on the stream itself, with generous
deadlines; latency figures are printed by bench/handoff.py, not asserted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.backends import BACKENDS
from support.procs import ServiceProcess
from support.sse import Sse, SseReader

SHARED_BACKENDS = [b for b in BACKENDS if b != "memory"]
POLL = "0.1"


def acquire(http: httpx.Client, key: str, holder: str, ttl: float = 30.0) -> dict:  # type: ignore[type-arg]
    r = http.post(f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": ttl})
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


def release(http: httpx.Client, key: str, lease: dict) -> None:  # type: ignore[type-arg]
    r = http.post(
        f"/v1/leases/{key}/release",
        json={"holder": lease["holder"], "fencing_token": lease["fencing_token"]},
    )
    assert r.status_code == 200, r.text


def expect(events: SseReader, kind: str, holder: str, token: int, timeout: float = 10.0) -> Sse:
    ev = events.next(timeout)
    assert (ev.event, ev.holder, ev.data["lease"]["fencing_token"]) == (kind, holder, token), ev
    assert ev.data["type"] == kind and ev.data["replay"] is False
    assert ev.id == f"{ev.key}:{ev.data['version']}"
    return ev


def run_sequence(
    writer: httpx.Client, events: SseReader, key: str, short: float = 0.5
) -> list[Sse]:
    """acquire → release → acquire by another → expiry → takeover, event by event."""
    seen = []
    a = acquire(writer, key, "a")
    seen.append(expect(events, "acquired", "a", 1))
    release(writer, key, a)
    seen.append(expect(events, "released", "a", 1))
    acquire(writer, key, "b", ttl=short)
    seen.append(expect(events, "acquired", "b", 2))
    seen.append(expect(events, "expired", "b", 2))
    assert seen[-1].data["lease"]["held"] is False
    acquire(writer, key, "c")
    seen.append(expect(events, "taken_over", "c", 3))
    versions = [e.data["version"] for e in seen]
    assert versions == sorted(set(versions))
    return seen


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the tests that each use their own keys (starting one is slow)."""
    tmp = tmp_path_factory.mktemp("watched")
    svc = ServiceProcess(
        (tmp / "data").as_uri(),
        extra_args=("--watch-poll-interval", POLL),
        log_path=tmp / "service.log",
    )
    with svc:
        yield svc


@pytest.fixture
def http(watched: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=watched.url, timeout=10.0) as client:
        yield client


def test_key_stream_sends_each_change_in_order(watched: ServiceProcess, http: httpx.Client) -> None:
    with SseReader(f"{watched.url}/v1/leases/job/watch") as events:
        assert events.status == 200
        run_sequence(http, events, "job")


def test_prefix_stream_sends_only_its_keys(watched: ServiceProcess, http: httpx.Client) -> None:
    with SseReader(f"{watched.url}/v1/watch?prefix=team.") as events:
        acquire(http, "other", "x")
        run_sequence(http, events, "team.job")


@pytest.fixture(params=SHARED_BACKENDS)
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess, float]]:
    """Two services on one backend, and the shortest ttl that backend takes."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    args = ("--watch-poll-interval", POLL)
    short = 2.0 if url.startswith("gs://") else 0.5
    a = ServiceProcess(url, extra_args=args, log_path=tmp_path / "a.log")
    b = ServiceProcess(url, extra_args=args, log_path=tmp_path / "b.log")
    with ThreadPoolExecutor(2) as pool:  # start both at once: each takes seconds
        started = [pool.submit(s.start) for s in (a, b)]
    try:
        for f in started:
            f.result()
        yield a, b, short
    finally:
        a.stop()
        b.stop()


def test_changes_made_through_another_replica_arrive_in_order(
    replicas: tuple[ServiceProcess, ServiceProcess, float],
) -> None:
    watcher, writer, short = replicas
    with (
        httpx.Client(base_url=writer.url, timeout=10) as http,
        SseReader(f"{watcher.url}/v1/watch?prefix=shared.") as events,
    ):
        run_sequence(http, events, "shared.job", short)


def test_stream_starts_with_the_current_state(watched: ServiceProcess, http: httpx.Client) -> None:
    held = acquire(http, "r.held", "a")
    gone = acquire(http, "r.gone", "b")
    release(http, "r.gone", gone)
    with SseReader(f"{watched.url}/v1/watch?prefix=r.") as events:
        first, second = events.take(2)
    assert [(e.key, e.event, e.data["replay"]) for e in (first, second)] == [
        ("r.gone", "released", True),
        ("r.held", "acquired", True),
    ]
    assert second.data["lease"]["fencing_token"] == held["fencing_token"]


def test_last_event_id_resumes_without_repeating(
    watched: ServiceProcess, http: httpx.Client
) -> None:
    url = f"{watched.url}/v1/leases/res/watch"
    lease = acquire(http, "res", "a")
    with SseReader(url) as events:
        replay = events.next()
    assert replay.event == "acquired" and replay.data["replay"] is True
    with SseReader(url, headers={"Last-Event-ID": replay.id or ""}) as events:
        release(http, "res", lease)
        after = events.next()  # no replay first: the client had that version
        assert (after.event, after.data["replay"]) == ("released", False)
    with SseReader(url, headers={"Last-Event-ID": replay.id or ""}) as events:
        missed = events.next()  # the release happened while disconnected
        assert (missed.event, missed.data["replay"]) == ("released", True)


def test_renewals_only_when_asked_for(watched: ServiceProcess, http: httpx.Client) -> None:
    base = f"{watched.url}/v1/leases/ren/watch"
    with (
        SseReader(base) as quiet,
        SseReader(base + "?renewed=true") as chatty,
    ):
        lease = acquire(http, "ren", "a")
        expect(quiet, "acquired", "a", 1)
        expect(chatty, "acquired", "a", 1)
        r = http.post("/v1/leases/ren/renew", json={"holder": "a", "fencing_token": 1})
        assert r.status_code == 200
        expect(chatty, "renewed", "a", 1)
        release(http, "ren", lease)
        expect(chatty, "released", "a", 1)
        expect(quiet, "released", "a", 1)  # the renewal was not sent to it


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/watch?prefix=a/b", {}),
        ("/v1/watch", {"Last-Event-ID": "not an id"}),
        ("/v1/watch", {"Last-Event-ID": "key:-3"}),
        ("/v1/leases/k/watch", {"Last-Event-ID": "other:3"}),
        ("/v1/leases/bad%20key/watch", {}),
    ],
)
def test_bad_watch_requests_are_invalid_request(
    http: httpx.Client, path: str, headers: dict[str, str]
) -> None:
    r = http.get(path, headers=headers)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and r.json()["lease"] is None


def test_shutdown_ends_streams_and_history_survives_restart(
    service: ServiceProcess, tmp_path: Path
) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as http:
        assert http.get("/v1/leases/hist/history").json()["error"] == "not_found"
        a = acquire(http, "hist", "a")
        release(http, "hist", a)
        acquire(http, "hist", "b")
        with SseReader(f"{service.url}/v1/watch") as events:
            service.stop()
            assert events.ended(timeout=15)
        log = (tmp_path / "service.log").read_text()
        assert "without completing response" not in log
        assert "Traceback" not in log
        service.start()  # the history lives in the backend, not in the process
        body = http.get("/v1/leases/hist/history").json()
    assert body["key"] == "hist" and body["limit"] >= 2
    assert [(t["holder"], t["fencing_token"], t["ended_by"]) for t in body["terms"]] == [
        ("a", 1, "released"),
        ("b", 2, None),
    ]
