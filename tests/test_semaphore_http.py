"""Semaphore keys over HTTP: the ``limit`` field, its refusals, and the admin token (B1, I4).

A real service (uvicorn) with a token file: a writer's acquire with another
limit than the held key's is 409 ``limit_mismatch``; an admin token's sets
it; a bad ``limit`` is 422 and changes nothing; a plain lease answers the
fields it always did, through the hot path and through the framework's
route alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.procs import ServiceProcess
from support.tokens import TokenSet

PLAIN_FIELDS = [
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
]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    return TokenSet.write(
        tmp_path_factory.mktemp("sem") / "tokens.json",
        writer=("write", ""),
        operator=("admin", ""),
        reader=("read", ""),
    )


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, tokens: TokenSet) -> Iterator[httpx.Client]:
    root: Path = tmp_path_factory.mktemp("sem-svc")
    (root / "data").mkdir()
    svc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path)),
        log_path=root / "service.log",
    )
    with svc, httpx.Client(base_url=svc.url, timeout=10.0) as client:
        yield client


def acquire(
    http: httpx.Client, tokens: TokenSet, key: str, holder: str, who: str = "writer", **extra: Any
) -> httpx.Response:
    body = {"holder": holder, "ttl": 30, **extra}
    return http.post(f"/v1/leases/{key}/acquire", json=body, headers=tokens.header(who))


def test_limit_three_grants_three_then_lease_held(http: httpx.Client, tokens: TokenSet) -> None:
    answers = [acquire(http, tokens, "jobs", f"w{i}", limit=3) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    last = answers[-1].json()
    assert last["limit"] == 3 and [h["holder"] for h in last["holders"]] == ["w0", "w1", "w2"]
    assert last["holder"] == "w2"
    full = acquire(http, tokens, "jobs", "w3", limit=3)
    assert full.status_code == 409 and full.json()["error"] == "lease_held"
    assert len(full.json()["lease"]["holders"]) == 3
    got = http.get("/v1/leases/jobs", headers=tokens.header("reader")).json()
    assert [h["holder"] for h in got["holders"]] == ["w0", "w1", "w2"]
    listed = http.get("/v1/leases?prefix=jobs", headers=tokens.header("reader")).json()
    assert listed["leases"][0]["limit"] == 3


def test_limit_mismatch_then_admin_changes_it(http: httpx.Client, tokens: TokenSet) -> None:
    assert acquire(http, tokens, "plain", "a").status_code == 200
    refused = acquire(http, tokens, "plain", "b", limit=3)
    assert refused.status_code == 409 and refused.json()["error"] == "limit_mismatch"
    assert refused.json()["lease"]["holder"] == "a"
    changed = acquire(http, tokens, "plain", "b", who="operator", limit=3)
    assert changed.status_code == 200, changed.text
    assert [h["holder"] for h in changed.json()["holders"]] == ["a", "b"]
    back = acquire(http, tokens, "plain", "c", limit=1)
    assert back.status_code == 409 and back.json()["error"] == "limit_mismatch"


@pytest.mark.parametrize("limit", [0, 1001, -1, "3", True, 2.5, None])
def test_bad_limit_is_422_and_changes_nothing(
    http: httpx.Client, tokens: TokenSet, limit: object
) -> None:
    key = "bad-limit"
    first = acquire(http, tokens, key, "keep", limit=2)
    assert first.status_code == 200
    before = {k: v for k, v in first.json().items() if k not in ("server_time", "holders")}
    body: dict[str, Any] = {"holder": "other", "ttl": 30, "limit": limit}
    if limit is None:
        body = {"holder": "other", "ttl": 30, "limit": {"n": 3}}
    r = http.post(f"/v1/leases/{key}/acquire", json=body, headers=tokens.header("writer"))
    assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
    assert "limit" in r.json()["message"]
    after = http.get(f"/v1/leases/{key}", headers=tokens.header("reader")).json()
    assert {k: v for k, v in after.items() if k not in ("server_time", "holders")} == {
        **before,
        "state": after["state"],
        "held": after["held"],
    }
    assert [h["holder"] for h in after["holders"]] == ["keep"]


def test_limit_one_answers_exactly_the_plain_fields(http: httpx.Client, tokens: TokenSet) -> None:
    for extra in ({}, {"limit": 1}):
        key = f"plain-{len(extra)}"
        a = acquire(http, tokens, key, "a", **extra)
        assert list(a.json()) == PLAIN_FIELDS
        token = a.json()["fencing_token"]
        r = http.post(
            f"/v1/leases/{key}/renew",
            json={"holder": "a", "fencing_token": token},
            headers=tokens.header("writer"),
        )
        assert list(r.json()) == PLAIN_FIELDS
        assert list(http.get(f"/v1/leases/{key}", headers=tokens.header("reader")).json()) == (
            PLAIN_FIELDS
        )
        # the framework's route (a chunked body skips the hot path) answers the same
        slow = http.post(
            f"/v1/leases/{key}/acquire",
            content=iter([b'{"holder": "a", "ttl": 30' + (b', "limit": 1}' if extra else b"}")]),
            headers={**tokens.header("writer"), "content-type": "application/json"},
        )
        assert slow.status_code == 200 and list(slow.json()) == PLAIN_FIELDS


def test_release_and_renew_per_slot(http: httpx.Client, tokens: TokenSet) -> None:
    a = acquire(http, tokens, "slots", "a", limit=2).json()
    b = acquire(http, tokens, "slots", "b", limit=2).json()
    assert b["fencing_token"] > a["fencing_token"]
    w = tokens.header("writer")
    rel = http.post(
        "/v1/leases/slots/release",
        json={"holder": "a", "fencing_token": a["fencing_token"]},
        headers=w,
    )
    assert rel.status_code == 200 and rel.json()["state"] == "released"
    assert [h["holder"] for h in rel.json()["holders"]] == ["b"]
    lost = http.post(
        "/v1/leases/slots/renew",
        json={"holder": "a", "fencing_token": a["fencing_token"]},
        headers=w,
    )
    assert lost.status_code == 409 and lost.json()["error"] == "lease_lost"
    c = acquire(http, tokens, "slots", "c", limit=2).json()
    assert c["fencing_token"] > b["fencing_token"]


def test_history_lists_every_slots_terms(http: httpx.Client, tokens: TokenSet) -> None:
    a = acquire(http, tokens, "hist", "a", limit=2).json()
    acquire(http, tokens, "hist", "b", limit=2)
    http.post(
        "/v1/leases/hist/release",
        json={"holder": "a", "fencing_token": a["fencing_token"]},
        headers=tokens.header("writer"),
    )
    acquire(http, tokens, "hist", "c", limit=2)
    terms = http.get("/v1/leases/hist/history", headers=tokens.header("reader")).json()["terms"]
    assert [(t["holder"], t["fencing_token"], t["ended_by"]) for t in terms] == [
        ("a", 1, "released"),
        ("b", 2, None),
        ("c", 3, None),
    ]
