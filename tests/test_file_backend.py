"""The file backend under real processes: durability (I3), tokens across
restarts (fencing (I2)), and several service processes sharing one directory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.procs import ServiceProcess


@pytest.mark.parametrize("sync", ["filesystem", "file"])
def test_acknowledged_lease_survives_sigkill(data_dir: Path, tmp_path: Path, sync: str) -> None:
    with ServiceProcess(
        data_dir.as_uri(), extra_args=("--file-sync", sync), log_path=tmp_path / "s.log"
    ) as service:
        _survives_sigkill(service)


def _survives_sigkill(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url) as http:
        acked = http.post("/v1/leases/cron/acquire", json={"holder": "a", "ttl": 600}).json()
        renewed = http.post(
            "/v1/leases/cron/renew",
            json={"holder": "a", "fencing_token": acked["fencing_token"], "ttl": 900},
        ).json()
    service.kill()
    service.start()
    with httpx.Client(base_url=service.url) as http:
        after = http.get("/v1/leases/cron").json()
    assert after["holder"] == "a"
    assert after["fencing_token"] == acked["fencing_token"]
    assert after["expires_at"] == renewed["expires_at"]
    assert after["held"] is True


def test_tokens_never_reused_across_restarts(service: ServiceProcess) -> None:
    tokens: list[int] = []
    for round_ in range(3):
        with httpx.Client(base_url=service.url) as http:
            for i in range(4):
                holder = f"h{round_}-{i}"
                rec = http.post(
                    "/v1/leases/cron/acquire", json={"holder": holder, "ttl": 60}
                ).json()
                tokens.append(rec["fencing_token"])
                rel = http.post(
                    "/v1/leases/cron/release",
                    json={"holder": holder, "fencing_token": rec["fencing_token"]},
                )
                assert rel.status_code == 200
        service.kill()
        service.start()
    assert tokens == list(range(1, 13))


def _race(urls: list[str], key: str, n: int) -> list[httpx.Response]:
    def attempt(i: int) -> httpx.Response:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=30) as http:
            return http.post(f"/v1/leases/{key}/acquire", json={"holder": f"h{i}", "ttl": 60})

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(attempt, range(n)))


def test_two_processes_one_directory_one_winner(data_dir: Path, tmp_path: Path) -> None:
    url = data_dir.as_uri()
    with (
        ServiceProcess(url, log_path=tmp_path / "a.log") as a,
        ServiceProcess(url, log_path=tmp_path / "b.log") as b,
    ):
        for round_ in range(3):
            key = f"race{round_}"
            results = _race([a.url, b.url], key, 50)
            codes = sorted(r.status_code for r in results)
            assert codes.count(200) == 1, codes
            assert codes.count(409) == 49, codes
            winner = next(r.json() for r in results if r.status_code == 200)
            losers = [r.json() for r in results if r.status_code == 409]
            assert all(body["lease"]["holder"] == winner["holder"] for body in losers)
            with httpx.Client(base_url=b.url) as http:
                assert http.get(f"/v1/leases/{key}").json()["holder"] == winner["holder"]


def test_two_workers_one_winner(data_dir: Path, tmp_path: Path) -> None:
    with ServiceProcess(data_dir.as_uri(), workers=2, log_path=tmp_path / "w.log") as svc:
        results = _race([svc.url], "race", 50)
        assert sorted(r.status_code for r in results).count(200) == 1
