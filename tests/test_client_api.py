"""``LeaseClient`` and ``AsyncLeaseClient`` against a real service process.

Answers the service cannot be made to give on demand (503, a proxy's HTML
500, 401/403 before auth exists, a hang) come from ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from leaderelection import (
    AsyncLeaseClient,
    BackendUnavailable,
    Config,
    Forbidden,
    InternalError,
    InvalidRequest,
    LeaderElector,
    Lease,
    LeaseClient,
    LeaseError,
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
    RequestTimeout,
    ServiceError,
    TransportError,
    Unauthorized,
)
from support.procs import ServiceProcess, free_port


def assert_raises(
    exc: type[LeaseError], fn: Callable[..., object], *args: object, **kwargs: object
) -> LeaseError:
    with pytest.raises(exc) as err:
        fn(*args, **kwargs)
    return err.value


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the module; each test uses keys of its own."""
    data = tmp_path_factory.mktemp("data")
    with ServiceProcess(data.as_uri(), log_path=data.parent / "service.log") as svc:
        yield svc


@pytest.fixture
def client(shared_service: ServiceProcess) -> Iterator[LeaseClient]:
    with LeaseClient(shared_service.url) as c:
        yield c


def test_acquire_renew_release_get(client: LeaseClient) -> None:
    lease = client.acquire("job", "a", 5.5)
    assert isinstance(lease, Lease)
    assert (lease.key, lease.holder, lease.fencing_token, lease.ttl) == ("job", "a", 1, 5.5)
    assert lease.held and lease.expires_at > lease.acquired_at
    assert 0 < lease.remaining <= 5.5
    renewed = client.renew("job", "a", lease.fencing_token, 7.25)
    assert renewed.fencing_token == 1 and renewed.ttl == 7.25
    assert client.renew("job", "a", 1).ttl == 7.25  # ttl omitted: kept
    released = client.release("job", "a", 1)
    assert not released.held
    looked = client.get("job")
    assert not looked.held and looked.fencing_token == 1 and looked.holder == "a"
    again = client.acquire("job", "b", 5)
    assert again.fencing_token == 2 and again.holder == "b"
    assert client.get("job").holder == "b"


def test_errors_carry_the_current_lease(client: LeaseClient) -> None:
    client.acquire("held-job", "a", 5)
    with pytest.raises(LeaseHeld) as held:
        client.acquire("held-job", "b", 5)
    assert held.value.status == 409 and held.value.code == "lease_held"
    assert held.value.lease is not None and held.value.lease.holder == "a"
    with pytest.raises(LeaseLost) as lost:
        client.renew("held-job", "b", 1)
    assert lost.value.lease is not None and lost.value.lease.holder == "a"
    with pytest.raises(LeaseLost):
        client.release("held-job", "a", 99)
    with pytest.raises(LeaseNotFound):
        client.get("never")
    with pytest.raises(LeaseNotFound):
        client.renew("never", "a", 1)
    with pytest.raises(InvalidRequest, match="ttl"):
        client.acquire("held-job2", "a", 0.001)
    assert isinstance(held.value, ServiceError) and isinstance(held.value, LeaseError)


@pytest.mark.parametrize("key", ["../x", "a/b", "", "-a", "a?b=c", "x" * 129, "é"])
def test_bad_keys_never_reach_the_network(key: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent {request.url}")

    with LeaseClient("http://le.invalid", transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(InvalidRequest, match="key"):
            c.acquire(key, "a", 5)
        with pytest.raises(InvalidRequest, match="key"):
            c.get(key)


def test_list_iterates_every_page(client: LeaseClient) -> None:
    keys = [f"svc-{i:03d}" for i in range(7)] + ["svc_other"]
    for k in keys:
        client.acquire(k, "a", 30)
    got = [lease.key for lease in client.list(prefix="svc-", page_size=3)]
    assert got == sorted(k for k in keys if k.startswith("svc-"))
    assert [lease.key for lease in client.list(prefix="svc")] == sorted(keys)


def test_token_is_sent_as_bearer() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": "unauthorized", "message": "no", "lease": None})

    transport = httpx.MockTransport(handler)
    with LeaseClient("http://x", token="s3cret", transport=transport) as c:
        assert_raises(Unauthorized, c.get, "k")
    assert seen == ["Bearer s3cret"]


def _answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("response", "exc", "check"),
    [
        (
            _answer(
                503,
                {"error": "backend_unavailable", "message": "db down", "lease": None},
                {"Retry-After": "3"},
            ),
            BackendUnavailable,
            lambda e: e.retry_after == 3.0 and e.message == "db down",
        ),
        (
            _answer(403, {"error": "forbidden", "message": "read-only", "lease": None}),
            Forbidden,
            lambda e: e.status == 403,
        ),
        (_answer(502, b"<html>bad gateway</html>"), InternalError, lambda e: e.status == 502),
        (
            _answer(500, {"error": "internal", "message": "x", "lease": None}),
            InternalError,
            lambda e: e.message == "x",
        ),
        (_answer(200, {"not": "a lease"}), InternalError, lambda e: "not a lease" in e.message),
        (
            _answer(200, b"garbage"),
            InternalError,
            lambda e: e.status == 200 and "not a lease" in e.message,
        ),
    ],
)
def test_answers_map_to_the_tree(
    response: httpx.Response, exc: type[ServiceError], check: object
) -> None:
    with LeaseClient("http://x", transport=httpx.MockTransport(lambda r: response)) as c:
        error = assert_raises(exc, c.get, "k")
    assert callable(check) and check(error)


def test_transport_errors_are_wrapped_from_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with LeaseClient(url) as c, pytest.raises(TransportError) as err:
        c.acquire("k", "a", 5)
    assert isinstance(err.value.__cause__, httpx.ConnectError)
    assert "POST /v1/leases/k/acquire" in str(err.value)


def test_timeout_is_request_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with LeaseClient("http://x", transport=httpx.MockTransport(slow)) as c:
        error = assert_raises(RequestTimeout, c.get, "k", timeout=0.1)
    assert isinstance(error, TransportError)
    assert isinstance(error.__cause__, httpx.ReadTimeout)


def test_per_call_timeout_reaches_the_request() -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return _answer(404, {"error": "not_found", "message": "", "lease": None})

    with LeaseClient("http://x", timeout=7, transport=httpx.MockTransport(handler)) as c:
        for t in (None, 0.25):
            with pytest.raises(LeaseNotFound):
                c.get("k", timeout=t)
    assert [t["read"] for t in seen] == [7, 0.25]  # type: ignore[index]


def test_client_may_be_shared_between_threads(client: LeaseClient) -> None:
    errors: list[BaseException] = []

    def campaign(i: int) -> None:
        try:
            for j in range(5):
                client.acquire(f"thr{i}-{j}", f"h{i}", 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=campaign, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(list(client.list(prefix="thr"))) == 20


async def test_async_client_has_the_same_surface(shared_service: ServiceProcess) -> None:
    async with AsyncLeaseClient(shared_service.url) as c:
        lease = await c.acquire("async-job", "a", 5)
        assert lease.fencing_token == 1
        with pytest.raises(LeaseHeld) as held:
            await c.acquire("async-job", "b", 5)
        assert held.value.lease is not None and held.value.lease.holder == "a"
        assert (await c.renew("async-job", "a", 1, 6)).ttl == 6
        assert (await c.get("async-job")).holder == "a"
        for i in range(5):
            await c.acquire(f"ap{i}", "a", 5)
        assert [x.key async for x in c.list(prefix="ap", page_size=2)] == [
            f"ap{i}" for i in range(5)
        ]
        assert not (await c.release("async-job", "a", 1)).held
        with pytest.raises(LeaseLost):
            await c.renew("async-job", "a", 1)
    assert set(dir(LeaseClient)) - {"close", "__enter__", "__exit__"} <= set(
        dir(AsyncLeaseClient)
    ) | {"_send"}


async def test_async_transport_error_wrapped() -> None:
    async with AsyncLeaseClient(f"http://127.0.0.1:{free_port()}") as c:
        with pytest.raises(TransportError) as err:
            await c.get("k")
    assert isinstance(err.value.__cause__, httpx.ConnectError)


WRITE_TOKEN = "w" * 24
READ_TOKEN = "r" * 24
SCOPED_TOKEN = "s" * 24


def test_tokens_against_a_service_with_authentication(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            [
                {"token": WRITE_TOKEN, "role": "write"},
                {"token": READ_TOKEN, "role": "read"},
                {"token": SCOPED_TOKEN, "role": "write", "prefix": "team-a."},
            ]
        )
    )
    data = tmp_path / "data"
    data.mkdir()
    with ServiceProcess(data.as_uri(), extra_args=("--auth-file", str(tokens))) as svc:
        with LeaseClient(svc.url) as anonymous:
            assert_raises(Unauthorized, anonymous.acquire, "job", "a", 5)
        with LeaseClient(svc.url, token="x" * 24) as wrong:
            assert_raises(Unauthorized, wrong.get, "job")
        with LeaseClient(svc.url, token=READ_TOKEN) as reader:
            assert_raises(Forbidden, reader.acquire, "job", "a", 5)
        with LeaseClient(svc.url, token=SCOPED_TOKEN) as scoped:
            assert_raises(Forbidden, scoped.acquire, "team-b.job", "a", 5)
            assert scoped.acquire("team-a.job", "a", 5).fencing_token == 1
        with LeaseClient(svc.url, token=WRITE_TOKEN) as writer:
            assert writer.acquire("job", "a", 5).fencing_token == 1
            elector = LeaderElector(writer, "elected", config=Config(2, 0.4, 0.3))
            with elector:
                assert elector.wait_for_leadership(20)
        with LeaseClient(svc.url, token=READ_TOKEN) as reader:
            assert [x.key for x in reader.list()] == ["elected", "job", "team-a.job"]
            assert not reader.get("elected").held  # the elector released on stop
