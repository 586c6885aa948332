"""Real service processes on the gs:// backend against a real fake-gcs-server.

Three replicas sharing one bucket must still grant a free key to exactly one
of many concurrent candidates and hand out strictly increasing tokens; an
emulator that stops and starts again on the same data makes the service
answer 503 meanwhile, and recover with every acknowledged write intact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gcs import GcsEmulator
from support.procs import ServiceProcess, wait_until

pytestmark = pytest.mark.gcs

TTL = 30.0


@pytest.fixture(scope="module")
def replicas(
    gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServiceProcess]]:
    """Three replicas on one bucket, shared by the tests of this module (each
    test uses its own keys)."""
    bucket = gcs_emulator.create_bucket()
    logs = tmp_path_factory.mktemp("replicas")
    url = f"gs://{bucket}/leases"
    procs = [
        ServiceProcess(url, env=gcs_emulator.env(), log_path=logs / f"service-{i}.log")
        for i in range(3)
    ]
    try:
        with ThreadPoolExecutor(len(procs)) as pool:  # start-up is mostly imports: overlap it
            list(pool.map(ServiceProcess.start, procs))
        yield procs
    finally:
        for p in procs:
            p.stop()
        gcs_emulator.delete_bucket(bucket)


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body)


def test_three_replicas_grant_a_free_key_to_exactly_one_of_100(
    replicas: list[ServiceProcess],
) -> None:
    candidates = 100
    clients = [
        httpx.Client(
            base_url=p.url,
            timeout=60.0,
            limits=httpx.Limits(max_connections=candidates, max_keepalive_connections=0),
        )
        for p in replicas
    ]
    start = threading.Barrier(candidates)

    def candidate(i: int) -> httpx.Response:
        client = clients[i % len(clients)]
        start.wait()
        return _post(client, "/v1/leases/hot/acquire", {"holder": f"c{i}", "ttl": TTL})

    try:
        with ThreadPoolExecutor(candidates) as pool:
            answers = list(pool.map(candidate, range(candidates)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] + [409] * (candidates - 1), statuses
        winner = next(r.json() for r in answers if r.status_code == 200)
        assert winner["fencing_token"] == 1
        for r in answers:
            if r.status_code == 409:
                body = r.json()
                assert body["error"] == "lease_held"
                assert body["lease"]["holder"] == winner["holder"]
        for client in clients:  # every replica reads the same record
            assert client.get("/v1/leases/hot").json()["holder"] == winner["holder"]
    finally:
        for client in clients:
            client.close()


def test_tokens_strictly_increase_over_100_contended_rounds(
    replicas: list[ServiceProcess],
) -> None:
    """Each round, one candidate per replica races for the key; exactly one wins
    and releases, and its token is one more than the last round's."""
    clients = [httpx.Client(base_url=p.url, timeout=60.0) for p in replicas]
    tokens: list[int] = []
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            for rnd in range(100):
                holders = [f"r{rnd}-h{i}" for i in range(len(clients))]
                answers = list(
                    pool.map(
                        lambda c, h: _post(c, "/v1/leases/k/acquire", {"holder": h, "ttl": TTL}),
                        clients,
                        holders,
                    )
                )
                won = [(c, r.json()) for c, r in zip(clients, answers, strict=True) if r.is_success]
                assert len(won) == 1, [r.status_code for r in answers]
                assert all(r.status_code in (200, 409) for r in answers)
                client, rec = won[0]
                tokens.append(rec["fencing_token"])
                # release through another replica than the one that granted it
                other = clients[(clients.index(client) + 1) % len(clients)]
                body = {"holder": rec["holder"], "fencing_token": rec["fencing_token"]}
                released = _post(other, "/v1/leases/k/release", body)
                assert released.status_code == 200 and released.json()["held"] is False
    finally:
        for c in clients:
            c.close()
    assert tokens == list(range(1, 101))


def test_emulator_restart_answers_503_then_recovers_without_losing_records(
    tmp_path: Path,
) -> None:
    emu = GcsEmulator(root=tmp_path / "gcs-data", log_path=tmp_path / "gcs.log")
    with emu:
        bucket = emu.create_bucket()
        svc = ServiceProcess(
            f"gs://{bucket}/leases",
            env=emu.env(),
            extra_args=("--gcs-timeout", "1"),
            log_path=tmp_path / "service.log",
        )
        with svc, httpx.Client(base_url=svc.url, timeout=30.0) as http:
            acked: dict[str, dict[str, Any]] = {}
            for i in range(10):
                r = _post(http, f"/v1/leases/k{i}/acquire", {"holder": f"h{i}", "ttl": TTL})
                assert r.status_code == 200
                acked[f"k{i}"] = r.json()
            for i in range(0, 10, 3):  # some released, some renewed: each kind must survive
                rec = acked[f"k{i}"]
                body = {"holder": rec["holder"], "fencing_token": rec["fencing_token"]}
                r = _post(http, f"/v1/leases/k{i}/release", body)
                assert r.status_code == 200
                acked[f"k{i}"] = r.json()
            r = _post(http, "/v1/leases/k1/renew", {"holder": "h1", "fencing_token": 1, "ttl": 60})
            assert r.status_code == 200
            acked["k1"] = r.json()

            # A renewer keeps writing while the emulator goes away: whatever it got
            # acknowledged must be there afterwards (an unanswered one may be too).
            last_ack: dict[str, Any] = {}
            stop_renewing = threading.Event()

            def renewer() -> None:
                with httpx.Client(base_url=svc.url, timeout=30.0) as own:
                    while not stop_renewing.is_set():
                        body = {"holder": "h4", "fencing_token": 1}
                        r = _post(own, "/v1/leases/k4/renew", body)
                        if r.status_code == 200:
                            last_ack.update(r.json())
                        else:
                            assert r.status_code == 503, r.text

            thread = threading.Thread(target=renewer)
            thread.start()
            wait_until(lambda: bool(last_ack), 30.0, what="a first acknowledged renewal")
            emu.stop()
            stop_renewing.set()
            thread.join(60)
            acked["k4"] = dict(last_ack)
            down = [
                http.get("/v1/leases/k2"),
                _post(http, "/v1/leases/k1/renew", {"holder": "h1", "fencing_token": 1}),
                _post(http, "/v1/leases/new/acquire", {"holder": "x", "ttl": TTL}),
                http.get("/v1/leases"),
                http.get("/readyz"),
            ]
            for r in down:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                assert r.json()["error"] == "backend_unavailable"
                assert int(r.headers["Retry-After"]) >= 1

            emu.start()
            wait_until(
                lambda: http.get("/readyz").status_code == 200, 30.0, 0.1, "service recovery"
            )
            for key, before in acked.items():
                now = http.get(f"/v1/leases/{key}").json()
                assert now["holder"] == before["holder"], key
                assert now["fencing_token"] == before["fencing_token"], key
                assert now["held"] == before["held"], key
                if key == "k4":  # a renewal may have landed after its answer was lost
                    assert now["renewed_at"] >= before["renewed_at"]
                else:
                    assert now["renewed_at"] == before["renewed_at"], key
                    assert now["expires_at"] == before["expires_at"], key
            listed = http.get("/v1/leases").json()["leases"]
            assert [x["key"] for x in listed] == sorted(acked)
            # the token counter carries on across the restart
            r = _post(http, "/v1/leases/k0/acquire", {"holder": "after", "ttl": TTL})
            assert r.status_code == 200
            assert r.json()["fencing_token"] == acked["k0"]["fencing_token"] + 1
