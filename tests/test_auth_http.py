"""Authentication and authorization end to end: a real service with a token file.

401 (with ``WWW-Authenticate: Bearer``) without a valid token on every route
but the probes (/healthz, /readyz), 403 for the wrong role or a key outside the token's prefix, and
Isolation (I4): no refused request changes a stored record.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.procs import ServiceProcess
from support.tokens import TokenSet

ROLES = {
    "admin": ("write", ""),
    "reader": ("read", ""),
    "team_a": ("write", "team-a."),
    "team_a_reader": ("read", "team-a."),
    "operator": ("admin", ""),
    "team_a_operator": ("admin", "team-a."),
}

PROBES = ("/healthz", "/readyz")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    return TokenSet.write(tmp_path_factory.mktemp("auth") / "tokens.json", **ROLES)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, tokens: TokenSet) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("auth-svc")
    (root / "data").mkdir()
    log = root / "service.log"
    # debug logging: the test below reads the log for tokens
    proc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path), "--log-level", "debug"),
        log_path=log,
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def http(svc: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=10.0) as client:
        yield client


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record a refused request must leave alone."""
    return {k: v for k, v in record.items() if k not in ("server_time", "held")}


def acquire(http: httpx.Client, tokens: TokenSet, who: str, key: str, holder: str = "h") -> Any:
    r = http.post(
        f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": 60}, headers=tokens.header(who)
    )
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "lease"}
    assert body["error"] == code and body["lease"] is None


def operations(http: httpx.Client, tokens: TokenSet) -> list[tuple[str, str]]:
    doc = http.get("/openapi.json", headers=tokens.header("reader")).json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "k1", path))
        for path, item in doc["paths"].items()
        for method in item
    ]


def test_every_route_but_the_probes_needs_a_token(http: httpx.Client, tokens: TokenSet) -> None:
    ops = operations(http, tokens)
    assert ("GET", "/v1/leases/k1") in ops and ("POST", "/v1/leases/k1/acquire") in ops
    extra = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/route")]
    for method, path in ops + extra:
        if path in PROBES:
            continue
        r = http.request(method, path, json={"holder": "h", "ttl": 5})
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == 'Bearer realm="leaderelection"'
        assert "Authorization: Bearer" in r.json()["message"]
    for path in PROBES:  # kubelet and Docker send no token
        assert http.get(path).status_code == 200, path


def test_openapi_declares_bearer_on_every_operation_but_the_probes(
    http: httpx.Client, tokens: TokenSet
) -> None:
    doc = http.get("/openapi.json", headers=tokens.header("reader")).json()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert {k: v for k, v in scheme.items() if k != "description"} == {
        "type": "http",
        "scheme": "bearer",
    }
    # the description tells a client where tokens come from and which routes need none
    for words in ("token file", "LEADERELECTION_AUTH_FILE", "/healthz", "/readyz"):
        assert words in scheme["description"], (words, scheme["description"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            declared = op.get("security") == [{"bearer": []}]
            assert declared is (path not in PROBES), f"{method} {path}"
            if declared:
                assert "401" in op["responses"], f"{method} {path}"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-configured-token-at-all",
        "Bearer  x y",
        "Basic dXNlcjpwYXNz",
        "bearer",
        "Token x",
    ],
)
def test_invalid_or_malformed_tokens_are_401(
    http: httpx.Client, tokens: TokenSet, authorization: str
) -> None:
    r = http.get("/v1/leases", headers={"Authorization": authorization})
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_invalid_token_says_invalid_token(http: httpx.Client, tokens: TokenSet) -> None:
    r = http.get("/v1/leases", headers={"Authorization": "Bearer " + "x" * 40})
    assert r.headers["www-authenticate"] == 'Bearer realm="leaderelection", error="invalid_token"'
    assert r.json()["message"] == "invalid API token"
    # never from the URL, where proxies and logs keep it
    token = tokens.tokens["reader"]
    assert http.get(f"/v1/leases?access_token={token}").status_code == 401
    # the scheme is case-insensitive (RFC 7235)
    token = tokens.tokens["reader"]
    assert http.get("/v1/leases", headers={"Authorization": f"bEaReR {token}"}).status_code == 200


def test_read_token_looks_but_cannot_touch(http: httpx.Client, tokens: TokenSet) -> None:
    held = acquire(http, tokens, "admin", "ro-1", holder="owner")
    ro = tokens.header("reader")
    assert public(http.get("/v1/leases/ro-1", headers=ro).json()) == public(held)
    assert [x["key"] for x in http.get("/v1/leases?prefix=ro-", headers=ro).json()["leases"]] == [
        "ro-1"
    ]
    assert http.get("/readyz", headers=ro).status_code == 200
    token = {"holder": "owner", "fencing_token": held["fencing_token"]}
    for op, body in [
        ("acquire", {"holder": "owner", "ttl": 5}),
        ("acquire", {"holder": "other", "ttl": 5}),
        ("renew", token),
        ("release", token),
        ("acquire", {"holder": 5}),  # a bad body too: the role is checked first
    ]:
        r = http.post(f"/v1/leases/ro-1/{op}", json=body, headers=ro)
        assert_error(r, 403, "forbidden")
        assert "may only read" in r.json()["message"]
    r = http.post("/v1/leases/ro-new/acquire", json={"holder": "x", "ttl": 5}, headers=ro)
    assert_error(r, 403, "forbidden")
    assert public(http.get("/v1/leases/ro-1", headers=ro).json()) == public(held)
    assert http.get("/v1/leases/ro-new", headers=ro).status_code == 404


def test_scoped_write_token_works_inside_its_prefix_only(
    http: httpx.Client, tokens: TokenSet
) -> None:
    mine = acquire(http, tokens, "team_a", "team-a.cron", holder="a")
    theirs = acquire(http, tokens, "admin", "team-b.cron", holder="b")
    a = tokens.header("team_a")
    renewed = http.post(
        "/v1/leases/team-a.cron/renew",
        json={"holder": "a", "fencing_token": mine["fencing_token"]},
        headers=a,
    )
    assert renewed.status_code == 200
    b_token = {"holder": "b", "fencing_token": theirs["fencing_token"]}
    for method, path, body in [
        ("POST", "/v1/leases/team-b.cron/release", b_token),
        ("POST", "/v1/leases/team-b.cron/renew", b_token),
        ("POST", "/v1/leases/team-b.cron/acquire", {"holder": "b", "ttl": 5}),
        ("POST", "/v1/leases/team-a/acquire", {"holder": "a", "ttl": 5}),
        ("GET", "/v1/leases/team-b.cron", None),
        ("GET", "/v1/leases/team-b.never", None),  # 403, not 404: existence is not told
    ]:
        r = http.request(method, path, json=body, headers=a)
        assert_error(r, 403, "forbidden")
        assert "outside the prefix 'team-a.'" in r.json()["message"]
    after = http.get("/v1/leases/team-b.cron", headers=tokens.header("admin")).json()
    assert public(after) == public(theirs)
    released = http.post(
        "/v1/leases/team-a.cron/release",
        json={"holder": "a", "fencing_token": mine["fencing_token"]},
        headers=a,
    )
    assert released.status_code == 200 and released.json()["held"] is False


def test_scoped_read_token_cannot_write_inside_its_own_prefix(
    http: httpx.Client, tokens: TokenSet
) -> None:
    """The prefix widens nothing: inside it a read token still only reads."""
    held = acquire(http, tokens, "admin", "team-a.ro", holder="owner")
    ra = tokens.header("team_a_reader")
    assert public(http.get("/v1/leases/team-a.ro", headers=ra).json()) == public(held)
    token = {"holder": "owner", "fencing_token": held["fencing_token"]}
    for path, body in [
        ("/v1/leases/team-a.ro/acquire", {"holder": "owner", "ttl": 5}),
        ("/v1/leases/team-a.ro/acquire", {"holder": "other", "ttl": 5}),
        ("/v1/leases/team-a.ro/renew", token),
        ("/v1/leases/team-a.ro/release", token),
        ("/v1/leases/team-a.ro-new/acquire", {"holder": "x", "ttl": 5}),
    ]:
        r = http.post(path, json=body, headers=ra)
        assert_error(r, 403, "forbidden")
        assert "may only read" in r.json()["message"], r.json()
    admin = tokens.header("admin")
    assert public(http.get("/v1/leases/team-a.ro", headers=admin).json()) == public(held)
    assert http.get("/v1/leases/team-a.ro-new", headers=admin).status_code == 404


def test_scoped_listing_is_narrowed_or_refused(http: httpx.Client, tokens: TokenSet) -> None:
    for key in ("team-a.l1", "team-a.l2", "team-b.l1", "zz-list"):
        acquire(http, tokens, "admin", key)
    ra = tokens.header("team_a_reader")

    def keys(query: str) -> list[str]:
        r = http.get(f"/v1/leases{query}", headers=ra)
        assert r.status_code == 200, r.text
        return [x["key"] for x in r.json()["leases"]]

    everything = keys("")
    assert everything and all(k.startswith("team-a.") for k in everything)
    assert {"team-a.l1", "team-a.l2"} <= set(everything)
    assert keys("?prefix=team") == everything
    assert keys("?prefix=team-a.l") == ["team-a.l1", "team-a.l2"]
    # pages stay in the scope
    first = http.get("/v1/leases?limit=1", headers=ra).json()
    page2 = http.get(f"/v1/leases?limit=100&cursor={first['next_cursor']}", headers=ra).json()
    assert all(x["key"].startswith("team-a.") for x in page2["leases"])
    assert_error(http.get("/v1/leases?prefix=team-b.", headers=ra), 403, "forbidden")
    assert_error(http.get("/v1/leases?prefix=zz", headers=ra), 403, "forbidden")
    admin = http.get("/v1/leases?prefix=team-b.l", headers=tokens.header("admin")).json()
    assert [x["key"] for x in admin["leases"]] == ["team-b.l1"]


def test_requests_without_a_valid_token_change_nothing(
    http: httpx.Client, tokens: TokenSet
) -> None:
    held = acquire(http, tokens, "admin", "s4-key", holder="owner")
    token = {"holder": "owner", "fencing_token": held["fencing_token"]}
    for headers in (
        {},
        {"Authorization": "Bearer " + "y" * 43},
        {"Authorization": "Bearer " + tokens.tokens["admin"][:-1]},
    ):
        for op, body in [
            ("release", token),
            ("renew", token),
            ("acquire", {"holder": "x", "ttl": 5}),
        ]:
            r = http.post(f"/v1/leases/s4-key/{op}", json=body, headers=headers)
            assert_error(r, 401, "unauthorized")
        r = http.post("/v1/leases/s4-new/acquire", json={"holder": "x", "ttl": 5}, headers=headers)
        assert_error(r, 401, "unauthorized")
    admin = tokens.header("admin")
    assert public(http.get("/v1/leases/s4-key", headers=admin).json()) == public(held)
    assert http.get("/v1/leases/s4-new", headers=admin).status_code == 404


def test_tokens_never_reach_the_log(
    svc: ServiceProcess, http: httpx.Client, tokens: TokenSet
) -> None:
    wrong = "w" * 40
    for name in tokens.tokens:
        http.get("/v1/leases/k", headers=tokens.header(name))
        http.get(f"/v1/leases/k?access_token={tokens.tokens[name]}")
    http.get("/v1/leases", headers={"Authorization": f"Bearer {wrong}"})
    svc.stop()  # flush: the log is complete once the process is gone
    svc.start()
    assert svc.log_path is not None
    log = svc.log_path.read_text()
    assert "authentication on: 6 API tokens (2 admin, 2 write, 2 read)" in log
    for secret in [*tokens.tokens.values(), wrong]:
        assert secret not in log


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
    return subprocess.run(
        [sys.executable, "-m", "leaderelection_service.cli", "serve", "--port", "1", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_non_loopback_without_tokens(tmp_path: Path) -> None:
    for args, env in [
        (("--host", "0.0.0.0"), None),
        ((), {"LEADERELECTION_HOST": "::"}),
    ]:
        done = serve("--backend-url", str(tmp_path), *args, env=env)
        assert done.returncode == 2
        assert "refusing to listen on" in done.stderr and "--insecure" in done.stderr
        assert "Traceback" not in done.stderr


def test_serve_stops_at_a_bad_token_file(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text('[{"token": "short", "role": "read"}]')
    for args, env in [
        (("--auth-file", str(bad)), None),
        ((), {"LEADERELECTION_AUTH_FILE": str(bad)}),
    ]:
        done = serve("--backend-url", str(tmp_path), *args, env=env)
        assert done.returncode == 2
        assert f"auth file {bad}, entry 1: token must be 16-512 characters" in done.stderr
        assert "Traceback" not in done.stderr


def test_auth_file_from_the_environment(tmp_path: Path) -> None:
    tokens = TokenSet.write(tmp_path / "t.json", only=("read", ""))
    (tmp_path / "d").mkdir()
    env = {"LEADERELECTION_AUTH_FILE": str(tokens.path)}
    with ServiceProcess((tmp_path / "d").as_uri(), env=env) as proc:
        assert httpx.get(proc.url + "/v1/leases").status_code == 401
        assert httpx.get(proc.url + "/v1/leases", headers=tokens.header("only")).status_code == 200


def test_only_an_admin_token_revokes_and_within_its_prefix(
    http: httpx.Client, tokens: TokenSet
) -> None:
    held = acquire(http, tokens, "admin", "team-a.rev", holder="wedged")  # a write token

    def revoke(who: str, key: str = "team-a.rev") -> httpx.Response:
        return http.post(f"/v1/leases/{key}/revoke", json={}, headers=tokens.header(who))

    for who in ("reader", "admin", "team_a"):  # read and write tokens may not
        r = revoke(who)
        assert_error(r, 403, "forbidden")
        assert "admin token" in r.json()["message"]
    other = acquire(http, tokens, "admin", "team-b.rev")
    assert_error(revoke("team_a_operator", "team-b.rev"), 403, "forbidden")  # outside its prefix
    assert http.get("/v1/leases/team-b.rev", headers=tokens.header("reader")).json()["held"]
    r = revoke("team_a_operator")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    lost = http.post(
        "/v1/leases/team-a.rev/renew",
        json={"holder": "wedged", "fencing_token": held["fencing_token"]},
        headers=tokens.header("admin"),
    )
    assert lost.status_code == 409 and lost.json()["error"] == "lease_lost"
    assert revoke("operator", "team-b.rev").json()["state"] == "revoked"
    assert other["fencing_token"] == 1
    # an admin token writes too
    assert acquire(http, tokens, "operator", "team-b.rev")["fencing_token"] == 2
