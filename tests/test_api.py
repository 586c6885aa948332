"""HTTP API v1 against a real ``leaderelection serve`` process on the file backend.

Every row of the contract's operations table and every error code the API
answers without auth, as a client sees them on the wire.
"""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from support.procs import wait_until

ERROR_KEYS = {"error", "message", "lease"}
RECORD_KEYS = {
    "key",
    "holder",
    "fencing_token",
    "ttl",
    "acquired_at",
    "renewed_at",
    "expires_at",
    "transitions",
    "held",
    "state",
    "value",
    "server_time",
}


def acquire(http: httpx.Client, key: str, holder: str, ttl: float = 10.0) -> httpx.Response:
    return http.post(f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": ttl})


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in resp.text
    return body


def test_acquire_answers_the_contract_record(http: httpx.Client) -> None:
    resp = acquire(http, "cron", "a", 1.5)
    assert resp.status_code == 200
    rec = resp.json()
    assert set(rec) == RECORD_KEYS
    assert rec["holder"] == "a" and rec["fencing_token"] == 1 and rec["held"] is True
    assert rec["ttl"] == 1.5
    for field in ("acquired_at", "renewed_at", "expires_at", "server_time"):
        assert rec[field].endswith("Z")
        datetime.fromisoformat(rec[field].replace("Z", "+00:00"))
    span = datetime.fromisoformat(rec["expires_at"][:-1]) - datetime.fromisoformat(
        rec["renewed_at"][:-1]
    )
    assert abs(span.total_seconds() - 1.5) < 0.002


def test_lease_held_carries_current_record(http: httpx.Client) -> None:
    acquire(http, "cron", "a")
    body = assert_error(acquire(http, "cron", "b"), 409, "lease_held")
    assert body["lease"]["holder"] == "a" and body["lease"]["held"] is True


def test_idempotent_acquire_keeps_token(http: httpx.Client) -> None:
    first = acquire(http, "cron", "a").json()
    again = acquire(http, "cron", "a", 20.0).json()
    assert again["fencing_token"] == first["fencing_token"]
    assert again["expires_at"] > first["expires_at"]


def test_renew_release_lookup_cycle(http: httpx.Client) -> None:
    rec = acquire(http, "cron", "a").json()
    token = rec["fencing_token"]
    renewed = http.post("/v1/leases/cron/renew", json={"holder": "a", "fencing_token": token})
    assert renewed.status_code == 200 and renewed.json()["ttl"] == 10.0
    assert renewed.json()["expires_at"] >= rec["expires_at"]
    got = http.get("/v1/leases/cron")
    assert got.status_code == 200 and got.json()["holder"] == "a"
    rel = http.post("/v1/leases/cron/release", json={"holder": "a", "fencing_token": token})
    assert rel.status_code == 200 and rel.json()["held"] is False
    again = http.post("/v1/leases/cron/release", json={"holder": "a", "fencing_token": token})
    assert again.status_code == 200 and again.json()["held"] is False
    assert http.get("/v1/leases/cron").json()["held"] is False
    b = acquire(http, "cron", "b").json()
    assert b["fencing_token"] == token + 1 and b["transitions"] == 1


def test_renew_and_release_by_wrong_holder_are_lease_lost(http: httpx.Client) -> None:
    token = acquire(http, "cron", "a").json()["fencing_token"]
    body = assert_error(
        http.post("/v1/leases/cron/renew", json={"holder": "b", "fencing_token": token, "ttl": 5}),
        409,
        "lease_lost",
    )
    assert body["lease"]["holder"] == "a"
    assert_error(
        http.post("/v1/leases/cron/release", json={"holder": "a", "fencing_token": token + 1}),
        409,
        "lease_lost",
    )


def test_unknown_key_is_not_found(http: httpx.Client) -> None:
    assert_error(http.get("/v1/leases/nope"), 404, "not_found")
    assert_error(
        http.post("/v1/leases/nope/renew", json={"holder": "a", "fencing_token": 1}),
        404,
        "not_found",
    )
    assert_error(
        http.post("/v1/leases/nope/release", json={"holder": "a", "fencing_token": 1}),
        404,
        "not_found",
    )


def test_takeover_after_expiry(http: httpx.Client) -> None:
    a = acquire(http, "cron", "a", 0.5).json()
    wait_until(lambda: not http.get("/v1/leases/cron").json()["held"], 10, what="expiry")
    b = acquire(http, "cron", "b").json()
    assert b["fencing_token"] == a["fencing_token"] + 1
    assert_error(
        http.post(
            "/v1/leases/cron/renew", json={"holder": "a", "fencing_token": a["fencing_token"]}
        ),
        409,
        "lease_lost",
    )


def test_list_paginates_by_key(http: httpx.Client) -> None:
    keys = [f"job.{i:02d}" for i in range(7)] + ["other"]
    for key in keys:
        assert acquire(http, key, "h").status_code == 200
    seen, cursor = [], None
    while True:
        params = {"prefix": "job.", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/leases", params=params).json()
        seen += [r["key"] for r in page["leases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == keys[:7]
    everything = http.get("/v1/leases").json()
    assert [r["key"] for r in everything["leases"]] == sorted(keys)
    assert everything["next_cursor"] is None


def test_health_and_ready(http: httpx.Client) -> None:
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["version"]
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "backend": "file"}


def test_unknown_route_and_method_use_error_body(http: httpx.Client) -> None:
    assert_error(http.get("/v2/nothing"), 404, "not_found")
    assert_error(http.put("/v1/leases/cron"), 405, "invalid_request")


@pytest.mark.parametrize("cursor", ["!!!", "Li4veA", "x" * 300])
def test_bad_cursor_is_invalid_request(http: httpx.Client, cursor: str) -> None:
    assert_error(http.get("/v1/leases", params={"cursor": cursor}), 422, "invalid_request")


def test_value_is_published_replaced_and_bounded(http: httpx.Client) -> None:
    first = acquire_with(http, "pub", {"holder": "a", "ttl": 10, "value": "é" * 2048})
    assert first.status_code == 200 and first.json()["value"] == "é" * 2048
    token = first.json()["fencing_token"]
    too_big = acquire_with(http, "pub", {"holder": "a", "ttl": 10, "value": "é" * 2049})
    body = assert_error(too_big, 422, "invalid_request")
    assert "4096 bytes" in body["message"] and "4098" in body["message"]
    renew = http.post(
        "/v1/leases/pub/renew", json={"holder": "a", "fencing_token": token, "value": "v2"}
    )
    assert renew.status_code == 200 and renew.json()["value"] == "v2"
    assert renew.json()["fencing_token"] == token
    nul = http.post(
        "/v1/leases/pub/renew", json={"holder": "a", "fencing_token": token, "value": "a\x00"}
    )
    assert_error(nul, 422, "invalid_request")
    assert http.get("/v1/leases/pub").json()["value"] == "v2"  # the refusals changed nothing
    history = http.get("/v1/leases/pub/history").json()
    assert history["terms"][-1]["value"] == "v2"


def acquire_with(http: httpx.Client, key: str, body: dict) -> httpx.Response:
    return http.post(f"/v1/leases/{key}/acquire", json=body)
