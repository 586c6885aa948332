"""The hot-route layer (``api.hot``) answers exactly as the FastAPI routes do.

Two apps over two identical backends on one frozen clock, one with the layer
and one without, get the same requests in the same order; every answer must be
the same: status, headers, body. The cases cover what the layer serves (valid
acquire, renew, release, and the lease errors they raise) and what it must
pass on (bodies that do not validate, tokens that may not write, other
content types, other methods).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from leaderelection_service.api.deps import get_backend
from leaderelection_service.app import create_app
from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.settings import Settings
from support.tokens import TokenSet

JSON = {"content-type": "application/json"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


Request = tuple[str, str, bytes, dict[str, str]]


def post(path: str, body: object, headers: dict[str, str] | None = None) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ("POST", path, raw, {**JSON, **(headers or {})})


# Each step: a request (or an advance of the clock, in seconds).
STEPS: list[Request | float] = [
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10}),
    post("/v1/leases/k/acquire", {"holder": "b", "ttl": 10}),  # 409 lease_held
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 12.5}),  # extends
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 1}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 1, "ttl": 3}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 2}),  # 409 lease_lost
    post("/v1/leases/k/renew", {"holder": "b", "fencing_token": 1}),  # 409 lease_lost
    post("/v1/leases/nokey/renew", {"holder": "a", "fencing_token": 1}),  # 404
    post("/v1/leases/nokey/release", {"holder": "a", "fencing_token": 1}),  # 404
    4.0,
    post("/v1/leases/k/acquire", {"holder": "b", "ttl": 5}),  # takeover, token 2
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 1}),  # 409
    post("/v1/leases/k/release", {"holder": "b", "fencing_token": 2}),
    post("/v1/leases/k/release", {"holder": "b", "fencing_token": 2}),  # idempotent
    post("/v1/leases/k/renew", {"holder": "b", "fencing_token": 2}),  # released: 409
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10}),
    # values: set, kept, replaced (announced or not), and refused beyond 4,096 bytes
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10, "value": "é" * 2048}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "value": "v2"}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "value": "v", "announce": True}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10, "value": "é" * 2049}),  # 422
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "value": "x" * 4097}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "value": "a\x00b"}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "value": 7}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "announce": "yes"}),
    post("/v1/leases/k/renew", b'{"holder": "a", "fencing_token": 3, "value": "\\ud800"}'),
    # semaphores: slots granted, the N+1th refused, a limit mismatch, per-slot renew/release
    post("/v1/leases/s/acquire", {"holder": "a", "ttl": 10, "limit": 2}),
    post("/v1/leases/s/acquire", {"holder": "b", "ttl": 10, "limit": 2}),
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": 2}),  # 409 lease_held
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": 3}),  # 409 limit_mismatch
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10}),  # 409 limit_mismatch
    post("/v1/leases/s/renew", {"holder": "a", "fencing_token": 1, "value": "v"}),
    post("/v1/leases/s/release", {"holder": "b", "fencing_token": 2}),
    post("/v1/leases/s/release", {"holder": "b", "fencing_token": 2}),  # idempotent
    post("/v1/leases/s/renew", {"holder": "b", "fencing_token": 2}),  # released: 409
    ("GET", "/v1/leases/s", b"", {}),
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": 0}),  # 422
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": 1001}),
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": "2"}),
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": True}),
    post("/v1/leases/s/acquire", {"holder": "c", "ttl": 10, "limit": 2.5}),
    # validation: passed on to the route, which describes the problem
    post("/v1/leases/k/acquire", b'{"holder": "a", "ttl": '),
    post("/v1/leases/k/acquire", b"[1, 2]"),
    post("/v1/leases/k/acquire", b""),
    post("/v1/leases/k/acquire", b"\xff\xfe"),
    post("/v1/leases/k/acquire", b'{"holder": "a", "ttl": NaN}'),
    post("/v1/leases/k/acquire", b'{"holder": "a", "ttl": 1e400}'),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": "10"}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": True}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 0.1}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 3601}),
    post("/v1/leases/k/acquire", {"holder": "", "ttl": 10}),
    post("/v1/leases/k/acquire", {"holder": "h" * 257, "ttl": 10}),
    post("/v1/leases/k/acquire", {"holder": "a\nb", "ttl": 10}),
    post("/v1/leases/k/acquire", {"holder": 7, "ttl": 10}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10, "extra": 1}),
    post("/v1/leases/k/acquire", {"ttl": 10}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": "3"}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3.0}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 0}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 2**70}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "ttl": None}),
    post("/v1/leases/k/renew", {"holder": "a", "fencing_token": 3, "ttl": 0}),
    post("/v1/leases/k/release", {"holder": "a"}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10}, {"content-type": "text/plain"}),
    post("/v1/leases/k/acquire", {"holder": "a", "ttl": 10}, {"content-type": "application/x"}),
    post(
        "/v1/leases/k/acquire",
        {"holder": "a", "ttl": 10},
        {"content-type": "application/json; charset=utf-8"},
    ),
    post("/v1/leases/-bad/acquire", {"holder": "a", "ttl": 10}),
    post("/v1/leases/" + "x" * 129 + "/acquire", {"holder": "a", "ttl": 10}),
    post("/v1/leases/k/steal", {"holder": "a", "ttl": 10}),
    ("PUT", "/v1/leases/k/acquire", b'{"holder": "a", "ttl": 10}', JSON),
    ("GET", "/v1/leases/k", b"", {}),
    post("/v1/leases/k/release", {"holder": "a", "fencing_token": 3}),
]

ROLES = {"admin": ("write", ""), "reader": ("read", ""), "team": ("write", "team.")}


def tokened(steps: list[Request | float], tokens: TokenSet) -> list[Request | float]:
    """``steps`` under every kind of caller: none, a bad token, each role."""
    out: list[Request | float] = []
    callers: list[dict[str, str]] = [
        {},
        {"authorization": "Bearer not-a-token"},
        {"authorization": "Basic abc"},
        *(tokens.header(name) for name in ROLES),
    ]
    for step in steps:
        if isinstance(step, float):
            out.append(step)
            continue
        method, path, body, headers = step
        for extra in callers:
            out.append((method, path, body, {**headers, **extra}))
            out.append((method, path.replace("/k/", "/team.k/"), body, {**headers, **extra}))
    return out


AppPair = Callable[[Settings], tuple[httpx.AsyncClient, httpx.AsyncClient, Clock]]


@pytest.fixture
async def pair() -> AsyncIterator[AppPair]:
    clients: list[httpx.AsyncClient] = []

    def make(settings: Settings) -> tuple[httpx.AsyncClient, httpx.AsyncClient, Clock]:
        clock = Clock()
        out = []
        for hot in (True, False):
            backend = CasLeases(MemoryStore(), clock=clock)
            app = create_app(settings, backend=backend, hot_routes=hot)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            out.append(httpx.AsyncClient(transport=transport, base_url="http://test"))
        clients.extend(out)
        return out[0], out[1], clock

    yield make
    for c in clients:
        await c.aclose()


def answer(resp: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return resp.status_code, sorted(resp.headers.multi_items()), resp.content


async def run_both(
    hot: httpx.AsyncClient, plain: httpx.AsyncClient, clock: Clock, steps: list[Request | float]
) -> list[int]:
    statuses = []
    for step in steps:
        if isinstance(step, float):
            clock.now += timedelta(seconds=step)
            continue
        method, path, body, headers = step
        a = await hot.request(method, path, content=body, headers=headers)
        b = await plain.request(method, path, content=body, headers=headers)
        assert answer(a) == answer(b), (method, path, body, headers)
        statuses.append(a.status_code)
    return statuses


async def test_same_answers_as_the_routes(pair: AppPair) -> None:
    hot, plain, clock = pair(Settings(backend_url="memory://"))
    statuses = await run_both(hot, plain, clock, STEPS)
    # the sequence exercised every kind of answer the layer gives or passes on
    assert {200, 404, 405, 409, 422} <= set(statuses)


async def test_same_answers_with_tokens(pair: AppPair, tmp_path: Path) -> None:
    tokens = TokenSet.write(tmp_path / "tokens.json", **ROLES)
    hot, plain, clock = pair(Settings(backend_url="memory://", auth_file=tokens.path))
    statuses = await run_both(hot, plain, clock, tokened(STEPS, tokens))
    assert {200, 401, 403, 409, 422} <= set(statuses)


async def test_metrics_label_served_requests_by_route(pair: AppPair) -> None:
    hot, _, _ = pair(Settings(backend_url="memory://"))

    def count(route: str, status: str) -> float:
        labels = {"method": "POST", "route": route, "status": status}
        return REGISTRY.get_sample_value("leaderelection_http_requests_total", labels) or 0.0

    route = "/v1/leases/{key}/acquire"
    before_ok, before_held = count(route, "200"), count(route, "409")
    assert (await hot.post("/v1/leases/m/acquire", json={"holder": "a", "ttl": 5})).is_success
    resp = await hot.post("/v1/leases/m/acquire", json={"holder": "b", "ttl": 5})
    assert resp.status_code == 409
    assert count(route, "200") == before_ok + 1
    assert count(route, "409") == before_held + 1


async def test_a_body_sent_in_chunks_is_served(pair: AppPair) -> None:
    hot, plain, _ = pair(Settings(backend_url="memory://"))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"holder": "a",'
        yield b' "ttl": 10}'

    for client in (hot, plain):
        resp = await client.post("/v1/leases/c/acquire", content=chunks(), headers=JSON)
        assert resp.status_code == 200, resp.text
        assert resp.json()["fencing_token"] == 1


async def test_valid_requests_never_reach_the_routes() -> None:
    # The routes' backend dependency fails here: only the hot layer can answer 200.
    app = create_app(Settings(backend_url="memory://"))

    def no_route() -> None:
        raise AssertionError("the FastAPI route ran")

    app.dependency_overrides[get_backend] = no_route
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        got = await client.post("/v1/leases/v/acquire", json={"holder": "a", "ttl": 5})
        assert got.status_code == 200, got.text
        token = got.json()["fencing_token"]
        body = {"holder": "a", "fencing_token": token}
        assert (await client.post("/v1/leases/v/renew", json=body)).status_code == 200
        assert (await client.post("/v1/leases/v/release", json=body)).status_code == 200
        # a body that does not validate goes on to the route (which fails here)
        bad = await client.post("/v1/leases/v/renew", json={"holder": "a"})
        assert bad.status_code == 500
