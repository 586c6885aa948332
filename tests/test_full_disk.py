"""A really full filesystem under the file backend: ``/readyz`` says so, then
recovers when space returns, and nothing acknowledged is lost (I3).

Issue 13: on a full disk ``/readyz`` answered 200 while writes failed with
503. The directory here is a small tmpfs filled by another file until the
kernel answers ENOSPC; no mock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from support.procs import ServiceProcess, wait_until
from support.tmpfs import fill, free, small_tmpfs

KEYS = [f"k{i}" for i in range(16)]


def ready(http: httpx.Client) -> int:
    return http.get("/readyz").status_code


def test_a_full_disk_is_not_ready_then_recovers_losing_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size_kib=1024) as disk:
        data = disk / "data"
        data.mkdir()
        svc = ServiceProcess(data.as_uri(), log_path=tmp_path / "service.log")
        with svc, httpx.Client(base_url=svc.url, timeout=30) as http:
            acked: dict[str, dict[str, Any]] = {}
            for key in KEYS:
                acked[key] = http.post(
                    f"/v1/leases/{key}/acquire", json={"holder": "a", "ttl": 600}
                ).json()
            for _ in range(2):  # established leaders: each key has its spare file now
                for key in KEYS:
                    acked[key] = renew(http, key, acked[key])
            assert ready(http) == 200

            assert fill(disk) > 0
            wait_until(lambda: ready(http) == 503, 10, 0.1, "/readyz saying the disk is full")
            resp = http.post("/v1/leases/new/acquire", json={"holder": "b", "ttl": 600})
            assert resp.status_code == 503
            assert resp.json()["message"] == "the storage directory is full"
            # A renewal rewrites its key's spare in place: it needs no new space,
            # and a failed write beside it (the acquire above) does not fail it.
            for key in KEYS:
                acked[key] = renew(http, key, acked[key])

            free(disk)
            wait_until(lambda: ready(http) == 200, 10, 0.1, "/readyz after space returned")
            resp = http.post("/v1/leases/new/acquire", json={"holder": "b", "ttl": 600})
            assert resp.status_code == 200, resp.text
            svc.kill()  # and every acknowledged write is on disk, not only in memory
            svc.start()
            for key, last in acked.items():
                now = http.get(f"/v1/leases/{key}").json()
                assert (now["holder"], now["fencing_token"]) == ("a", last["fencing_token"])
                assert now["expires_at"] == last["expires_at"], key
            assert http.get("/v1/leases/new").json()["holder"] == "b"


def renew(http: httpx.Client, key: str, last: dict[str, Any]) -> dict[str, Any]:
    body = {"holder": "a", "fencing_token": last["fencing_token"], "ttl": 600}
    resp = http.post(f"/v1/leases/{key}/renew", json=body)
    assert resp.status_code == 200, (key, resp.text)
    answer: dict[str, Any] = resp.json()
    return answer
