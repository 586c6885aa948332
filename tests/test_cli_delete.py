"""``leaderelection delete`` against a real service: one key, and the bulk clean-up.

The bulk clean-up's race (a key taken between the listing and its delete) is
forced by a small HTTP relay in front of the service that acquires the key
just before it passes that key's DELETE on.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_cli_status import acquire, cli

from leaderelection_service.commands.delete import ended_ago
from support.procs import ServiceProcess


def _release(http: httpx.Client, lease: dict[str, Any]) -> None:
    body = {"holder": lease["holder"], "fencing_token": lease["fencing_token"]}
    assert http.post(f"/v1/leases/{lease['key']}/release", json=body).status_code == 200


def _ended_at_least(http: httpx.Client, key: str, seconds: float) -> None:
    """Poll until ``key``'s last term ended ``seconds`` ago on the service's clock."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ago = ended_ago(http.get(f"/v1/leases/{key}").json())
        if ago is not None and ago >= seconds:
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} did not end {seconds} s ago in time")


def test_delete_one_key(service: ServiceProcess, http: httpx.Client) -> None:
    lease = acquire(http, "job-41", "host-a")
    held = cli("delete", "job-41", "--server", service.url)
    assert held.returncode == 1 and "409 lease_held" in held.stderr
    _release(http, lease)
    dry = cli("delete", "job-41", "--dry-run", "--server", service.url)
    assert (dry.returncode, dry.stdout.strip()) == (
        0,
        "would delete job-41 (last token 1, released)",
    )
    assert http.get("/v1/leases/job-41").status_code == 200
    done = cli("delete", "job-41", "--server", service.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deleted job-41 (last token 1, released)"
    assert http.get("/v1/leases/job-41").status_code == 404
    missing = cli("delete", "job-41", "--server", service.url)
    assert missing.returncode == 1 and "404 not_found" in missing.stderr
    assert acquire(http, "job-41", "host-b")["fencing_token"] > 1
    for bad in (["../v1/leases"], [], ["k", "--older-than", "1h", "--prefix", "k"]):
        refused = cli("delete", *bad, "--server", service.url)
        assert refused.returncode == 2, (bad, refused.stderr)


class _Relay(http.server.BaseHTTPRequestHandler):
    """Passes GET and DELETE on to ``upstream``; takes ``racy`` just before its DELETE."""

    upstream = ""
    racy = ""

    def _pass(self, method: str) -> None:
        with httpx.Client(base_url=self.upstream) as client:
            if method == "DELETE" and self.path == f"/v1/leases/{self.racy}":
                client.post(f"/v1/leases/{self.racy}/acquire", json={"holder": "late", "ttl": 60})
            r = client.request(method, self.path)
        self.send_response(r.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def do_GET(self) -> None:
        self._pass("GET")

    def do_DELETE(self) -> None:
        self._pass("DELETE")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def relay(service: ServiceProcess) -> Iterator[str]:
    handler = type("Relay", (_Relay,), {"upstream": service.url, "racy": "job-b"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bulk_deletes_old_keys_and_skips_one_taken_meanwhile(
    service: ServiceProcess, http: httpx.Client, relay: str
) -> None:
    for key in ("job-a", "job-b", "job-c", "keep-d"):
        _release(http, acquire(http, key, "h"))
    for key in ("job-a", "job-b", "job-c", "keep-d"):
        _ended_at_least(http, key, 1.0)
    held = acquire(http, "job-f", "h")  # held: never a candidate

    dry = cli("delete", "--older-than", "1s", "--prefix", "job-", "--dry-run", "--server", relay)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert [ln.split()[2] for ln in lines[:-1]] == ["job-a", "job-b", "job-c"]
    assert lines[-1] == "3 keys would be deleted, 0 skipped"
    assert len(http.get("/v1/leases", params={"prefix": "job-"}).json()["leases"]) == 4

    done = cli("delete", "--older-than", "1s", "--prefix", "job-", "--server", relay)
    assert done.returncode == 3, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("deleted job-a (last token 1, released")
    assert out[1] == "skipped job-b: held again by late"
    assert out[2].startswith("deleted job-c")
    assert out[3] == "2 keys deleted, 1 skipped"
    left = [v["key"] for v in http.get("/v1/leases").json()["leases"]]
    assert left == ["job-b", "job-f", "keep-d"]
    assert http.get("/v1/leases/job-f").json()["held"]
    # Nothing ended an hour ago: nothing to delete.
    _release(http, held)
    again = cli("delete", "--older-than", "1h", "--prefix", "", "--server", service.url)
    assert (again.returncode, again.stdout.strip()) == (0, "0 keys deleted, 0 skipped")
    assert len(http.get("/v1/leases").json()["leases"]) == 3
