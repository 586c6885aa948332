"""Watch streams at fleet size, and the cap of streams per caller, on real processes.

A prefix stream over more keys than a stream's queue of live events (1,024)
replays every key, stays open and then delivers live changes; a reader that
never reads is still cut off, with the reason as the stream's last line. One
token (or, without authentication, one client address) cannot take every
stream slot. The fleet is written through the file backend's object before
the service starts (thousands of HTTP calls would only be slower).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from leaderelection import LeaseClient, TooManyRequests
from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings
from support.procs import ServiceProcess, wait_until
from support.sse import SseReader
from support.tokens import TokenSet

SMALL = 1030
"""Just over one queue of live events."""
BIG = 10_000
LONG_HOLDER = "h" * 250
"""Big events, so that the replay of ``BIG`` keys outgrows the socket buffers."""


def populate(url: str, prefix: str, count: int, holder: str) -> None:
    async def run() -> None:
        backend = open_backend(url, Settings(backend_url=url))
        try:
            for start in range(0, count, 500):
                await asyncio.gather(
                    *(
                        backend.acquire(f"{prefix}{n:05d}", holder, 3600)
                        for n in range(start, min(count, start + 500))
                    )
                )
        finally:
            await backend.close()

    asyncio.run(run())


def gauge(http: httpx.Client, name: str) -> float:
    text = http.get("/metrics").text
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def no_streams(http: httpx.Client) -> None:
    """Earlier tests' streams are closed: the service counts them out when it notices."""
    wait_until(
        lambda: gauge(http, "leaderelection_watch_subscribers") == 0,
        timeout=20,
        what="no open stream",
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("fleet")
    url = (tmp / "data").as_uri()
    populate(url, "small.", SMALL, "host-a")
    populate(url, "big.", BIG, LONG_HOLDER)
    svc = ServiceProcess(
        url, extra_args=("--watch-poll-interval", "0.2"), log_path=tmp / "service.log"
    )
    with svc:
        yield svc


@pytest.fixture
def http(fleet: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(("prefix", "count"), [("small.", SMALL), ("big.", BIG)])
def test_a_prefix_stream_over_a_large_fleet_replays_all_then_stays_live(
    fleet: ServiceProcess, http: httpx.Client, prefix: str, count: int
) -> None:
    no_streams(http)
    with SseReader(f"{fleet.url}/v1/watch?prefix={prefix}") as events:
        replayed = events.take(count, timeout=60)
        assert all(e.data["replay"] for e in replayed)
        assert {e.key for e in replayed} == {f"{prefix}{n:05d}" for n in range(count)}
        # Still open: a change made after the replay arrives, and then another. The
        # key sorts before the fleet ('-' < '0'): the replay has read past its place,
        # so it comes live (a key further on may still come with the replay's last page).
        new = f"{prefix}-new"
        r = http.post(f"/v1/leases/{new}/acquire", json={"holder": "late", "ttl": 30})
        assert r.status_code == 200, r.text
        created = events.next(timeout=20)
        assert (created.event, created.key, created.data["replay"]) == (
            "acquired",
            new,
            False,
        )
        lease = r.json()
        r = http.post(
            f"/v1/leases/{new}/release",
            json={"holder": "late", "fencing_token": lease["fencing_token"]},
        )
        assert r.status_code == 200, r.text
        released = events.next(timeout=20)
        assert (released.event, released.key) == ("released", new)
        assert released.data["version"] > created.data["version"]
        assert gauge(http, "leaderelection_watch_subscribers") == 1


def test_a_reader_that_never_reads_is_cut_off_with_the_reason(
    fleet: ServiceProcess, http: httpx.Client
) -> None:
    no_streams(http)
    dropped_before = gauge(http, "leaderelection_watch_dropped_total")
    subscribers_before = 0.0
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", fleet.port))
        slow.sendall(b"GET /v1/watch?prefix=big. HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(
            lambda: gauge(http, "leaderelection_watch_subscribers") == subscribers_before + 1,
            timeout=30,
            what="the stream open",
        )

        # The replay fills the socket; live changes then fill the queue. The new
        # keys sort before the fleet ('-' < '0'), where the stuck replay has read
        # past: keys it has not reached yet would be left to the replay, not queued.
        def create(n: int) -> int:
            r = http.post(f"/v1/leases/big.-live.{n:05d}/acquire", json={"holder": "x", "ttl": 60})
            return r.status_code

        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(8) as pool:
            n = 0
            while gauge(http, "leaderelection_watch_dropped_total") == dropped_before:
                assert time.monotonic() < deadline, "the slow reader was never dropped"
                assert set(pool.map(create, range(n, n + 200))) == {200}
                n += 200
        assert gauge(http, "leaderelection_watch_subscribers") == subscribers_before
        # What the service sent before the drop, then the reason and the end.
        slow.settimeout(30)
        received = bytearray()
        while not received.endswith(b"0\r\n\r\n"):
            chunk = slow.recv(1 << 20)
            assert chunk, "the connection closed before the stream's end"
            received += chunk
    assert b": closed: dropped: this stream fell 1024 events behind" in received[-400:]


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[ServiceProcess, TokenSet]]:
    tokens = TokenSet.write(tmp_path / "tokens.json", one=("read", ""), two=("read", ""))
    svc = ServiceProcess(
        (tmp_path / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path), "--watch-streams-per-token", "3"),
        log_path=tmp_path / "service.log",
    )
    with svc:
        yield svc, tokens


def test_one_token_cannot_take_every_stream(capped: tuple[ServiceProcess, TokenSet]) -> None:
    svc, tokens = capped
    url = f"{svc.url}/v1/watch?prefix="
    mine = [SseReader(url, tokens.header("one")).start() for _ in range(3)]
    try:
        assert [r.status for r in mine] == [200, 200, 200]
        r = httpx.get(url, headers=tokens.header("one"), timeout=10)
        assert r.status_code == 429
        assert r.json()["error"] == "too_many_requests" and r.json()["lease"] is None
        assert "3 open watch streams" in r.json()["message"]
        assert int(r.headers["Retry-After"]) >= 1
        with SseReader(url, tokens.header("two")) as other:
            assert other.status == 200  # another token still opens a stream
        mine.pop().close()
        with httpx.Client(headers=tokens.header("one"), timeout=10) as client:
            # The closed stream's slot is freed once the service notices the close.
            wait_until(
                lambda: _opens(client, url),
                timeout=15,
                what="a stream of the first token again",
            )
    finally:
        for reader in mine:
            reader.close()


def _opens(client: httpx.Client, url: str) -> bool:
    with client.stream("GET", url) as r:
        return r.status_code == 200


def test_without_auth_the_cap_is_per_client_address(tmp_path: Path) -> None:
    svc = ServiceProcess(
        (tmp_path / "data").as_uri(),
        extra_args=("--watch-streams-per-token", "2"),
        log_path=tmp_path / "service.log",
    )
    url = f"{svc.url}/v1/watch?prefix="
    with svc:
        mine = [SseReader(url).start() for _ in range(2)]
        try:
            r = httpx.get(url, timeout=10)
            assert (r.status_code, r.json()["error"]) == (429, "too_many_requests")
            assert "address 127.0.0.1" in r.json()["message"]
            other = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(transport=other, timeout=10) as client:
                assert _opens(client, url)  # another loopback address is another caller
        finally:
            for reader in mine:
                reader.close()


def test_the_client_raises_too_many_requests_with_retry_after(
    capped: tuple[ServiceProcess, TokenSet],
) -> None:
    svc, tokens = capped
    url = f"{svc.url}/v1/watch?prefix="
    mine = [SseReader(url, tokens.header("one")).start() for _ in range(3)]
    try:
        with (
            LeaseClient(svc.url, token=tokens.tokens["one"]) as client,
            pytest.raises(TooManyRequests) as caught,
            client.watch(prefix="") as events,
        ):
            next(iter(events))
        assert (caught.value.status, caught.value.code) == (429, "too_many_requests")
        assert caught.value.retry_after >= 1
    finally:
        for reader in mine:
            reader.close()
