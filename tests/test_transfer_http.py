"""``POST /v1/leases/{key}/transfer`` on a real service (uvicorn, file backend, API tokens).

The rule itself is held to every backend by ``test_contract_transfer.py``;
here: the body's two forms, who may send each, and that a refused or
malformed request changes nothing (B1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.procs import ServiceProcess
from support.tokens import TokenSet

ROLES = {
    "writer": ("write", ""),
    "reader": ("read", ""),
    "operator": ("admin", ""),
    "team_a_operator": ("admin", "team-a."),
}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    return TokenSet.write(tmp_path_factory.mktemp("transfer") / "tokens.json", **ROLES)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, tokens: TokenSet) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("transfer-svc")
    (root / "data").mkdir()
    proc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path)),
        log_path=root / "service.log",
    )
    with proc, httpx.Client(base_url=proc.url, timeout=10.0) as client:
        yield client


def post(http: httpx.Client, tokens: TokenSet, path: str, body: Any, who: str = "writer"):
    return http.post(path, json=body, headers=tokens.header(who))


def acquire(http: httpx.Client, tokens: TokenSet, key: str, holder: str) -> dict[str, Any]:
    r = post(http, tokens, f"/v1/leases/{key}/acquire", {"holder": holder, "ttl": 60})
    assert r.status_code == 200, r.text
    return r.json()


def record(http: httpx.Client, tokens: TokenSet, key: str) -> dict[str, Any]:
    r = http.get(f"/v1/leases/{key}", headers=tokens.header("reader"))
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "server_time"}


def test_the_holder_hands_the_lease_to_its_successor(http: httpx.Client, tokens: TokenSet) -> None:
    a = acquire(http, tokens, "rolling", "v1")
    assert "successor" not in a  # a record without one answers as it always did
    body = {"holder": "v1", "fencing_token": a["fencing_token"], "to": "v2"}
    r = post(http, tokens, "/v1/leases/rolling/transfer", body)
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["held"], moved["state"], moved["successor"]) == (False, "released", "v2")
    refused = post(http, tokens, "/v1/leases/rolling/acquire", {"holder": "other", "ttl": 60})
    assert refused.status_code == 409 and refused.json()["error"] == "lease_held"
    assert refused.json()["lease"]["successor"] == "v2"
    b = acquire(http, tokens, "rolling", "v2")
    assert b["fencing_token"] == a["fencing_token"] + 1 and "successor" not in b
    history = http.get("/v1/leases/rolling/history", headers=tokens.header("reader")).json()
    assert [t["ended_by"] for t in history["terms"]] == ["transferred", None]


def test_an_operator_names_a_successor_and_the_holder_is_told_at_its_renewal(
    http: httpx.Client, tokens: TokenSet
) -> None:
    a = acquire(http, tokens, "team-a.job", "wedged")
    for who in ("reader", "writer"):
        r = post(http, tokens, "/v1/leases/team-a.job/transfer", {"to": "fresh"}, who)
        assert r.status_code == 403 and "admin token" in r.json()["message"], r.text
    other = acquire(http, tokens, "team-b.job", "h")
    r = post(http, tokens, "/v1/leases/team-b.job/transfer", {"to": "x"}, "team_a_operator")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert record(http, tokens, "team-b.job") == {
        k: v for k, v in other.items() if k != "server_time"
    }
    r = post(http, tokens, "/v1/leases/team-a.job/transfer", {"to": "fresh"}, "team_a_operator")
    assert r.status_code == 200, r.text
    assert (r.json()["held"], r.json()["holder"], r.json()["successor"]) == (
        True,
        "wedged",
        "fresh",
    )
    renew = {"holder": "wedged", "fencing_token": a["fencing_token"]}
    lost = post(http, tokens, "/v1/leases/team-a.job/renew", renew)
    assert lost.status_code == 409 and lost.json()["error"] == "lease_lost"
    assert lost.json()["lease"]["successor"] == "fresh"
    assert post(http, tokens, "/v1/leases/team-a.job/release", renew).status_code == 200
    assert acquire(http, tokens, "team-a.job", "fresh")["fencing_token"] == a["fencing_token"] + 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"holder": "h", "fencing_token": 1}, 422, "invalid_request"),  # no "to"
        ({"holder": "h", "fencing_token": 1, "to": ""}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 1, "to": "a\nb"}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 1, "to": "x" * 257}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 1, "to": 7}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 1, "to": "h"}, 422, "invalid_request"),  # itself
        ({"holder": "h", "to": "b"}, 422, "invalid_request"),  # no token
        ({"fencing_token": 1, "to": "b"}, 422, "invalid_request"),  # no holder
        ({"holder": "h", "fencing_token": 0, "to": "b"}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 1, "to": "b", "x": 1}, 422, "invalid_request"),
        ({"holder": "h", "fencing_token": 2, "to": "b"}, 409, "lease_lost"),  # another term
        ({"holder": "g", "fencing_token": 1, "to": "b"}, 409, "lease_lost"),
    ],
)
def test_bad_transfers_change_nothing(
    http: httpx.Client, tokens: TokenSet, body: dict[str, Any], status: int, code: str
) -> None:
    key = f"bad-{abs(hash(repr(body))) % 10**8}"
    acquire(http, tokens, key, "h")
    before = record(http, tokens, key)
    r = post(http, tokens, f"/v1/leases/{key}/transfer", body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
    assert record(http, tokens, key) == before


def test_transfer_of_an_unknown_key_is_not_found(http: httpx.Client, tokens: TokenSet) -> None:
    body = {"holder": "h", "fencing_token": 1, "to": "b"}
    assert post(http, tokens, "/v1/leases/never/transfer", body).status_code == 404
    r = post(http, tokens, "/v1/leases/never/transfer", {"to": "b"}, "operator")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = post(http, tokens, "/v1/leases/never/transfer", {"to": "b"}, "reader")
    assert r.status_code == 403


def test_a_read_token_is_refused_before_its_body_is_read(
    http: httpx.Client, tokens: TokenSet
) -> None:
    acquire(http, tokens, "ro", "h")
    r = post(http, tokens, "/v1/leases/ro/transfer", {"nonsense": True}, "reader")
    assert r.status_code == 403 and "may only read" in r.json()["message"]
