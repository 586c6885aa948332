"""B1: bad input gets a 4xx with the contract's error body, the service keeps
serving, and no stored record changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from support.procs import ServiceProcess

GOOD = {"holder": "a", "ttl": 10}


@pytest.fixture
def data_dir(module_data_dir: Path) -> Path:
    return module_data_dir


@pytest.fixture
def http(module_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=module_service.url, timeout=10.0) as client:
        yield client


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every file of the store's records directory (whatever its naming), by path."""
    records = data_dir / "leases"
    return {str(p.relative_to(records)): p.read_bytes() for p in records.rglob("*") if p.is_file()}


def raw_post(url: str, path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """POST ``path`` exactly as given: http.client neither resolves ``..`` nor merges ``//``
    (httpx turns ``/v1/leases/../x`` into ``/v1/x`` before sending)."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture
def seeded(http: httpx.Client, data_dir: Path) -> dict[str, bytes]:
    for key in ("x", "cron", "a.b"):
        assert http.post(f"/v1/leases/{key}/acquire", json=GOOD).status_code == 200
    return snapshot(data_dir)


BAD_BODIES: list[tuple[str, object]] = [
    ("malformed json", b'{"holder": "a", "ttl": '),
    ("not an object", b"[1, 2, 3]"),
    ("empty body", b""),
    ("ttl as string", {"holder": "b", "ttl": "10"}),
    ("ttl as bool", {"holder": "b", "ttl": True}),
    ("ttl too small", {"holder": "b", "ttl": 0.1}),
    ("ttl zero", {"holder": "b", "ttl": 0}),
    ("ttl negative", {"holder": "b", "ttl": -5}),
    ("ttl too large", {"holder": "b", "ttl": 3601}),
    ("ttl NaN", b'{"holder": "b", "ttl": NaN}'),
    ("ttl Infinity", b'{"holder": "b", "ttl": Infinity}'),
    ("holder missing", {"ttl": 10}),
    ("holder empty", {"holder": "", "ttl": 10}),
    ("holder too long", {"holder": "h" * 257, "ttl": 10}),
    ("holder not printable", {"holder": "a\nb", "ttl": 10}),
    ("holder as number", {"holder": 7, "ttl": 10}),
    ("unknown field", {"holder": "b", "ttl": 10, "extra": 1}),
]


@pytest.mark.parametrize("key", ["x", "newkey"])
@pytest.mark.parametrize(("label", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_acquire_bodies(
    http: httpx.Client, data_dir: Path, seeded: dict[str, bytes], key: str, label: str, body: object
) -> None:
    if isinstance(body, bytes):
        resp = http.post(
            f"/v1/leases/{key}/acquire", content=body, headers={"content-type": "application/json"}
        )
    else:
        resp = http.post(f"/v1/leases/{key}/acquire", json=body)
    assert 400 <= resp.status_code < 500, (label, resp.status_code, resp.text)
    assert resp.json()["error"] == "invalid_request"
    assert resp.json()["lease"] is None
    assert snapshot(data_dir) == seeded
    assert http.get("/healthz").status_code == 200


BAD_RENEWS = [
    {"holder": "a", "fencing_token": "1"},
    {"holder": "a", "fencing_token": 1.5},
    {"holder": "a", "fencing_token": 0},
    {"holder": "a", "fencing_token": True},
    {"holder": "a"},
    {"holder": "a", "fencing_token": 1, "ttl": 99999},
    {"holder": "a", "fencing_token": 1, "ttl": None, "x": 1},
]


# release takes no ttl: the ttl-only cases are renew's alone (without it they are valid)
BAD_CHANGES = [("renew", body) for body in BAD_RENEWS] + [
    ("release", body) for body in BAD_RENEWS if "ttl" not in body
]


@pytest.mark.parametrize(("op", "body"), BAD_CHANGES)
def test_bad_renew_and_release_bodies(
    http: httpx.Client, data_dir: Path, seeded: dict[str, bytes], op: str, body: dict
) -> None:
    resp = http.post(f"/v1/leases/x/{op}", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid_request"
    assert snapshot(data_dir) == seeded


BAD_KEYS = [
    "..%2Fx",
    "%2E%2E",
    "-leading-dash",
    ".hidden",
    "k" * 129,
    "caf%C3%A9",
    "a%2Fb",
    "a%20b",
    "a%00b",
    "%E2%9C%93",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(
    http: httpx.Client, data_dir: Path, seeded: dict[str, bytes], key: str
) -> None:
    for resp in (
        http.post(f"/v1/leases/{key}/acquire", json=GOOD),
        http.post(f"/v1/leases/{key}/renew", json={"holder": "a", "fencing_token": 1}),
        http.get(f"/v1/leases/{key}"),
    ):
        assert resp.status_code in (404, 422), (key, resp.status_code, resp.text)
        assert resp.json()["error"] in ("invalid_request", "not_found")
    assert snapshot(data_dir) == seeded
    assert not any(p.name.startswith("..") for p in data_dir.rglob("*"))


# (path as sent, status): a single-segment key meets key validation (422); more
# segments meet no route (404), whose message shows the path arrived unresolved.
TRAVERSALS = [
    ("/v1/leases/../acquire", 422),  # the key is ".."
    ("/v1/leases/./acquire", 422),
    ("/v1/leases/../x/acquire", 404),
    ("/v1/leases/../../leases/x/acquire", 404),
    ("/v1/leases/..%2Fx/acquire", 404),  # the server decodes %2F before routing
    ("/v1/leases/a/b/acquire", 404),
    ("/v1/leases//acquire", 404),
]


@pytest.mark.parametrize(("path", "status"), TRAVERSALS)
def test_path_traversal_and_slashes_never_reach_the_store(
    module_service: ServiceProcess,
    data_dir: Path,
    seeded: dict[str, bytes],
    path: str,
    status: int,
) -> None:
    got, body = raw_post(module_service.url, path, GOOD)
    assert (got, set(body)) == (status, {"error", "message", "lease"}), (path, got, body)
    assert body["lease"] is None
    if status == 422:
        assert body["error"] == "invalid_request" and "path.key" in str(body["message"])
    else:
        assert body["error"] == "not_found"
        assert str(body["message"]).endswith(unquote(path)), body  # nothing resolved ".."
    assert snapshot(data_dir) == seeded
    assert not (data_dir / "x").exists() and not (data_dir.parent / "x").exists()


def test_empty_key(http: httpx.Client, data_dir: Path, seeded: dict[str, bytes]) -> None:
    resp = http.post("/v1/leases//acquire", json=GOOD)
    assert resp.status_code in (404, 422)
    assert snapshot(data_dir) == seeded


def test_oversized_body(http: httpx.Client, data_dir: Path, seeded: dict[str, bytes]) -> None:
    big = {"holder": "a", "ttl": 10, "pad": "x" * (1 << 20)}
    resp = http.post("/v1/leases/x/acquire", json=big)
    assert resp.status_code == 413
    assert resp.json()["error"] == "invalid_request"
    chunked = http.post(
        "/v1/leases/x/acquire",
        content=iter([b"{" + b" " * 65536] * 16 + [b"}"]),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413  # the same answer as with a declared length
    assert chunked.json() == {
        "error": "invalid_request",
        "message": "request body larger than 16384 bytes",
        "lease": None,
    }
    assert snapshot(data_dir) == seeded
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"prefix": "a/b"}, {"prefix": "é"}],
)
def test_bad_list_params(
    http: httpx.Client, data_dir: Path, seeded: dict[str, bytes], params: dict
) -> None:
    resp = http.get("/v1/leases", params=params)
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid_request"
    assert snapshot(data_dir) == seeded


def test_wrong_content_type_is_a_clear_error(
    http: httpx.Client, data_dir: Path, seeded: dict[str, bytes]
) -> None:
    resp = http.post(
        "/v1/leases/x/acquire",
        content=b"holder=a&ttl=10",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid_request"
    assert "JSON" in resp.json()["message"]
    assert snapshot(data_dir) == seeded
