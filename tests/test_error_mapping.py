"""Failure paths that cannot be produced for real on demand: a bug inside the
service and an unreachable backend. The backend here is a stand-in that raises;
everything else is the real app."""

from __future__ import annotations

import httpx
import pytest

from leaderelection_service.app import create_app
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings


class Raising:
    """Wraps a real backend; every lease operation raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self._inner = open_backend("memory://")
        self.capabilities = self._inner.capabilities
        self.description = "raising"
        self.exc = exc

    async def _raise(self, *args: object) -> None:
        raise self.exc

    acquire = renew = release = get = list = ping = _raise

    async def wait_for_change(self, timeout: float) -> None:
        await self._inner.wait_for_change(timeout)

    async def close(self) -> None:
        await self._inner.close()


def client_for(exc: Exception) -> httpx.AsyncClient:
    app = create_app(Settings(backend_url="memory://"), backend=Raising(exc))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_unexpected_error_is_internal_without_a_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with client_for(RuntimeError("secret detail /etc/passwd")) as client:
        resp = await client.post("/v1/leases/k/acquire", json={"holder": "a", "ttl": 5})
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "internal",
        "message": "internal error; see the service log",
        "lease": None,
    }
    assert "secret" not in resp.text and "Traceback" not in resp.text
    assert any("secret detail" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_backend_outage_is_503_with_retry_after() -> None:
    async with client_for(BackendUnavailable("database is down", retry_after=2.0)) as client:
        for resp in (
            await client.post("/v1/leases/k/acquire", json={"holder": "a", "ttl": 5}),
            await client.post("/v1/leases/k/renew", json={"holder": "a", "fencing_token": 1}),
            await client.get("/v1/leases/k"),
            await client.get("/v1/leases"),
            await client.get("/readyz"),
        ):
            assert resp.status_code == 503
            assert resp.headers["retry-after"] == "2"
            assert resp.json()["error"] == "backend_unavailable"
        assert (await client.get("/healthz")).status_code == 200
        # /readyz answers without a token: the outage's details stay in the log
        assert "database is down" not in (await client.get("/readyz")).text
