"""PostgreSQL primary failover under the service: what synchronous replication
keeps, what asynchronous replication loses, and the warning that says which.

A primary and a streaming standby (``support.pgcluster``) from the installed
PostgreSQL binaries; one ``leaderelection serve`` on the libpq multi-host URL
``postgresql://…@P1,…@P2/postgres?target_session_attrs=read-write``, so it
writes to whichever of the two is the primary.

- synchronous (``synchronous_standby_names = '*'``, ``synchronous_commit =
  on``): a writer streams acquires, renews and releases over several keys;
  the primary is stopped like a crash (``pg_ctl stop -m immediate``) in the
  middle and the standby promoted; the service answers 503 in the window and
  then writes to the new primary. Every acknowledged state is there, tokens
  of each key strictly rise (none repeats), and no acquire was granted while
  the key was held (durability I3, fencing I2, one leader I1). ``/readyz``
  carries no warning.
- asynchronous: ``/readyz`` and the log warn; with the standby's WAL receipt
  cut (deterministic stand-in for replication lag), an acknowledged acquire
  and an acknowledged release vanish on promotion and the same fencing token
  is granted to a second holder: what the warning is about.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_durability import InFlight, could_have_written, durable

from support.needs import missing
from support.pgcluster import StreamingPair
from support.procs import ServiceProcess, wait_until

KEYS = [f"failover-{i}" for i in range(6)]
TTL = 600  # nothing expires during the test: held == not released


def start_pair(sync: bool) -> StreamingPair:
    try:
        return StreamingPair.start_new(sync=sync)
    except FileNotFoundError as exc:
        missing(f"PostgreSQL binaries ({exc})", "apt-get install postgresql")
        raise


@pytest.fixture
def sync_pair() -> Iterator[StreamingPair]:
    with start_pair(sync=True) as pair:
        yield pair


@pytest.fixture
def async_pair() -> Iterator[StreamingPair]:
    with start_pair(sync=False) as pair:
        yield pair


@dataclass
class Writer:
    """Acquire / renew / release on ``KEYS``, one request at a time, remembering
    every acknowledged state; after a 503 or a lost answer it reads the key back
    and accepts only the acknowledged state or what the unanswered request would
    have written."""

    url: str
    rng: random.Random
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    acknowledged: int = 0
    refused: int = 0
    ambiguous: int = 0
    unavailable: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    serial: int = 0

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0, trust_env=False) as http:
                while not self.stop.is_set():
                    self.step(http)
        except BaseException as exc:
            self.error = exc

    def step(self, http: httpx.Client) -> None:
        key = self.rng.choice(KEYS)
        cur = self.acked.get(key)
        self.serial += 1
        if cur is None or not cur["held"]:
            op, holder, body = "acquire", f"h{self.serial}", {"ttl": TTL}
        else:
            op = self.rng.choice(["renew", "renew", "release", "acquire"])
            holder = f"h{self.serial}" if op == "acquire" else cur["holder"]
            body = {"ttl": TTL}
            if op != "acquire":
                body = {"fencing_token": cur["fencing_token"]}
            if op == "renew":
                body["ttl"] = TTL + self.rng.randint(1, 99)
        flight = InFlight(key, op, holder, cur, body.get("ttl"))
        try:
            r = http.post(f"/v1/leases/{key}/{op}", json={"holder": holder, **body})
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code == 200:
            self.accept(key, r.json(), fresh_term=op == "acquire")
        elif r is not None and r.status_code == 409 and op == "acquire" and cur is not None:
            self.refused += 1  # held by the last acknowledged holder: one leader
            assert r.json()["lease"]["fencing_token"] == cur["fencing_token"], r.text
        elif r is None or r.status_code == 503:
            self.unavailable += 1
            self.reconcile(http, flight)
        else:
            raise AssertionError(f"{op} {key}: {r.status_code} {r.text}")

    def accept(self, key: str, record: dict[str, Any], *, fresh_term: bool) -> None:
        if fresh_term:
            seen = self.tokens.setdefault(key, [])
            assert not seen or record["fencing_token"] > seen[-1], (key, seen, record)
            seen.append(record["fencing_token"])
        self.acked[key] = record
        self.acknowledged += 1

    def reconcile(self, http: httpx.Client, flight: InFlight) -> None:
        """The answer was lost: the key must show the acknowledged state or the new one."""
        while True:
            try:
                r = http.get(f"/v1/leases/{flight.key}")
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code in (200, 404):
                break
            time.sleep(0.05)  # the failover window; the deadline is the test's
        acked = self.acked.get(flight.key)
        if r.status_code == 404:
            assert acked is None, f"{flight.key} lost: acknowledged {acked}"
            return
        stored = r.json()
        if acked is not None and durable(stored) == durable(acked):
            return
        assert could_have_written(flight, stored), (
            f"{flight.key} is {stored}; acknowledged {acked}; in flight {flight.op}"
        )
        self.ambiguous += 1
        self.accept(flight.key, stored, fresh_term=flight.op == "acquire")


def readyz(svc: ServiceProcess) -> httpx.Response:
    return httpx.get(svc.url + "/readyz", timeout=10.0, trust_env=False)


def test_sync_failover_keeps_every_acknowledged_write(
    sync_pair: StreamingPair, tmp_path: Path
) -> None:
    started = time.monotonic()
    seed = random.randrange(1 << 32)
    with ServiceProcess(sync_pair.url, log_path=tmp_path / "service.log") as svc:
        ready = readyz(svc)
        assert ready.status_code == 200 and "warnings" not in ready.json(), ready.text
        writer = Writer(svc.url, random.Random(seed))
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: writer.acknowledged >= 150 or writer.error is not None, 60)
            sync_pair.primary.stop("immediate")  # mid-load: a request is usually in flight
            killed_at = writer.acknowledged
            wait_until(lambda: readyz(svc).status_code == 503, 30, what="/readyz 503")
            sync_pair.promote()
            promoted = time.monotonic()
            wait_until(
                lambda: writer.acknowledged > killed_at or writer.error is not None,
                30,
                what="a write on the promoted standby",
            )
            back = time.monotonic() - promoted
            wait_until(
                lambda: writer.acknowledged >= killed_at + 150 or writer.error is not None,
                60,
                what="writes on the promoted standby",
            )
        finally:
            writer.stop.set()
            thread.join(30)
        assert writer.error is None, f"seed {seed}: {writer.error!r}"
        with httpx.Client(base_url=svc.url, timeout=10.0, trust_env=False) as http:
            for key in KEYS:
                stored = http.get(f"/v1/leases/{key}")
                acked = writer.acked.get(key)
                if acked is None:
                    assert stored.status_code == 404, (key, stored.text)
                else:
                    assert durable(stored.json()) == durable(acked), (seed, key)
        ready = readyz(svc)
        assert ready.status_code == 200 and "warnings" not in ready.json(), ready.text
    print(
        f"sync failover: {writer.acknowledged} acknowledged ({killed_at} before the crash), "
        f"{writer.refused} acquires refused while held, {writer.ambiguous} written-but-"
        f"unanswered, {writer.unavailable} answered 503 or lost, first write "
        f"{back:.2f} s after promote, "
        f"{sum(len(t) for t in writer.tokens.values())} terms, seed {seed}, "
        f"{time.monotonic() - started:.1f} s"
    )


def test_async_failover_loses_an_acknowledged_term_and_repeats_its_token(
    async_pair: StreamingPair, tmp_path: Path
) -> None:
    started = time.monotonic()
    log = tmp_path / "service.log"
    with ServiceProcess(async_pair.url, log_path=log) as svc:
        # The start-up check logs it; /readyz says it, naming no host, port or path.
        wait_until(lambda: "asynchronously" in log.read_text(), 20, what="the start-up warning")
        ready = readyz(svc)
        assert ready.status_code == 200, ready.text
        assert ready.json()["backend"] == "postgresql+psycopg"
        (warning,) = ready.json()["warnings"]
        assert "asynchronously" in warning and "synchronous_standby_names" in warning
        for secret in ("127.0.0.1", str(async_pair.primary.port), str(async_pair.standby.port),
                       str(async_pair.primary.datadir.parent)):  # fmt: skip
            assert secret not in ready.text

        with httpx.Client(base_url=svc.url, timeout=10.0, trust_env=False) as http:
            older = http.post("/v1/leases/older/acquire", json={"holder": "o", "ttl": TTL})
            assert older.status_code == 200
            wait_until(async_pair.caught_up, 30, 0.1, "the standby replaying the first term")
            async_pair.cut_wal_receipt()  # replication lag, made certain

            term = http.post("/v1/leases/leader/acquire", json={"holder": "a", "ttl": TTL})
            assert term.status_code == 200 and term.json()["fencing_token"] == 1
            body = {"holder": "o", "fencing_token": older.json()["fencing_token"]}
            assert http.post("/v1/leases/older/release", json=body).status_code == 200

            async_pair.primary.stop("immediate")
            async_pair.promote()
            wait_until(lambda: readyz(svc).status_code == 200, 30, what="the promoted standby")

            # Acknowledged, then gone: the term of "a" and the release of "older".
            assert http.get("/v1/leases/leader").status_code == 404
            assert http.get("/v1/leases/older").json()["held"] is True
            # And the fencing token of a's term is handed out again.
            again = http.post("/v1/leases/leader/acquire", json={"holder": "b", "ttl": TTL})
            assert again.status_code == 200
            assert again.json()["fencing_token"] == term.json()["fencing_token"] == 1
    print(
        f"async failover: lost term and repeated token shown in {time.monotonic() - started:.1f} s"
    )
