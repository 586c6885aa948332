"""Several service processes over one PostgreSQL, and PostgreSQL restarting under them.

- three ``leaderelection serve`` processes on one database: 100 concurrent
  acquirers spread over them for one free key, exactly one wins; 200 rounds
  of contended acquire/release spread over them give strictly increasing
  tokens (one leader (I1), fencing (I2), with many replicas);
- a throwaway PostgreSQL stopped like a crash while a leader renews: 503
  ``backend_unavailable`` with Retry-After and ``/readyz`` 503 during the
  outage, the service process stays up, answers again within seconds once the
  database is back, no acknowledged write is lost and no token repeats (durability (I3)).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.procs import ServiceProcess, wait_until
from support.sqlservers import PostgresServer, throwaway_postgres


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    procs = [
        ServiceProcess(postgres_url, log_path=tmp_path / f"svc{i}.log").start() for i in range(3)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


_clients: dict[str, httpx.Client] = {}


def post(url: str, path: str, body: dict[str, object]) -> httpx.Response:
    # One kept-alive client per service: on a loaded machine a fresh httpx
    # client costs more than the request itself.
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = httpx.Client(timeout=30, trust_env=False)
    return client.post(url + path, json=body)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


def test_one_winner_among_100_acquirers_on_three_replicas(replicas: list[ServiceProcess]) -> None:
    start = threading.Barrier(100)

    def attempt(i: int) -> int:
        # A client of its own per acquirer: truly concurrent connections.
        with httpx.Client(base_url=replicas[i % 3].url, timeout=60, trust_env=False) as client:
            client.get("/healthz")  # connected before the start line
            start.wait(timeout=60)
            body = {"holder": f"h{i}", "ttl": 60}
            return client.post("/v1/leases/hot/acquire", json=body).status_code

    with ThreadPoolExecutor(100) as pool:
        codes = list(pool.map(attempt, range(100)))
    assert sorted(set(codes)) == [200, 409], codes
    assert codes.count(200) == 1
    winner = f"h{codes.index(200)}"
    for r in replicas:
        rec = httpx.get(r.url + "/v1/leases/hot", timeout=30).json()
        assert rec["holder"] == winner and rec["fencing_token"] == 1


def test_tokens_strictly_increase_over_200_rounds_on_three_replicas(
    replicas: list[ServiceProcess],
) -> None:
    def contend(rnd: int, j: int) -> dict[str, object] | None:
        url = replicas[(rnd + j) % 3].url
        resp = post(url, "/v1/leases/rounds/acquire", {"holder": f"r{rnd}-{j}", "ttl": 60})
        assert resp.status_code in (200, 409), resp.text
        return resp.json() if resp.status_code == 200 else None

    tokens: list[int] = []
    with ThreadPoolExecutor(3) as pool:
        for rnd in range(200):
            wins = [w for w in pool.map(lambda j, r=rnd: contend(r, j), range(3)) if w]
            assert len(wins) == 1, wins
            win = wins[0]
            tokens.append(int(str(win["fencing_token"])))
            releaser = replicas[(rnd + 1) % 3].url
            body = {"holder": win["holder"], "fencing_token": win["fencing_token"]}
            assert post(releaser, "/v1/leases/rounds/release", body).status_code == 200
    assert tokens == list(range(1, 201))


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with throwaway_postgres() as server:
        yield server


def test_postgres_restart_while_a_leader_renews(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    with ServiceProcess(own_postgres.url, log_path=tmp_path / "svc.log") as svc:
        acquired = post(svc.url, "/v1/leases/leader/acquire", {"holder": "a", "ttl": 60})
        assert acquired.status_code == 200
        token = acquired.json()["fencing_token"]
        acked: dict[str, int] = {}
        for i in range(20):  # acknowledged terms of other keys, checked after the crash
            resp = post(svc.url, f"/v1/leases/k{i}/acquire", {"holder": "x", "ttl": 60})
            assert resp.status_code == 200
            acked[f"k{i}"] = resp.json()["fencing_token"]

        last_ok: dict[str, object] = {}
        outage: list[httpx.Response] = []
        statuses: list[int] = []  # every renewal's status, in order
        stop = threading.Event()

        def renew_loop() -> None:
            while not stop.is_set():
                body = {"holder": "a", "fencing_token": token, "ttl": 60}
                resp = post(svc.url, "/v1/leases/leader/renew", body)
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    last_ok.update(resp.json())
                else:
                    outage.append(resp)
                time.sleep(0.1)  # a renew period, not synchronisation

        renewer = threading.Thread(target=renew_loop, daemon=True)
        renewer.start()
        try:
            wait_until(lambda: bool(last_ok), 30, what="a first renewal")
            own_postgres.stop("immediate")  # like a crash: no shutdown checkpoint
            wait_until(lambda: len(outage) >= 3, 60, what="renewals refused during the outage")
            ready = httpx.get(svc.url + "/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["error"] == "backend_unavailable"
            assert httpx.get(svc.url + "/healthz", timeout=30).status_code == 200
            acked_before_restart = dict(last_ok)
            own_postgres.start()
            back = time.monotonic()
            wait_until(
                lambda: last_ok.get("renewed_at", "") > str(acked_before_restart["renewed_at"]),
                30,
                what="a renewal after PostgreSQL came back",
            )
            print(f"renewals answered again {time.monotonic() - back:.2f} s after restart")
            answered = str(last_ok["renewed_at"])
            wait_until(  # one more: once renewals are answered again, none is refused
                lambda: str(last_ok["renewed_at"]) > answered, 30, what="a second renewal"
            )
        finally:
            stop.set()
            renewer.join(timeout=60)

        for resp in outage:
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "backend_unavailable"
            assert int(resp.headers["retry-after"]) >= 1
        first_refused = statuses.index(503)
        recovered = statuses.index(200, first_refused)
        assert 503 not in statuses[recovered:], statuses  # no flapping once answered again
        assert set(statuses[first_refused:recovered]) == {503}, statuses
        assert svc.proc is not None and svc.proc.poll() is None  # the service stayed up

        for key, tok in acked.items():  # no acknowledged record lost
            rec = httpx.get(f"{svc.url}/v1/leases/{key}", timeout=30).json()
            assert rec["holder"] == "x" and rec["fencing_token"] == tok and rec["held"]
        rec = httpx.get(svc.url + "/v1/leases/leader", timeout=30).json()
        assert rec["holder"] == "a" and rec["fencing_token"] == token
        assert rec["renewed_at"] >= acked_before_restart["renewed_at"]
        released = post(
            svc.url, "/v1/leases/leader/release", {"holder": "a", "fencing_token": token}
        )
        assert released.status_code == 200
        nxt = post(svc.url, "/v1/leases/leader/acquire", {"holder": "b", "ttl": 60}).json()
        assert nxt["fencing_token"] == token + 1  # never repeated
