"""A ``LeaseBackend`` that times every operation and counts its failures.

Example::

    active: LeaseBackend = InstrumentedBackend(backend)   # app.py, around the opened backend

A wrapper rather than timing inside each backend: one place measures every
backend the same way, and ``answering`` feeds ``leaderelection_backend_up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from leaderelection_service.lease_errors import BackendUnavailable, LeaseError
from leaderelection_service.metric_families import BACKEND_ERRORS, BACKEND_LATENCY
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend


class InstrumentedBackend:
    """A ``LeaseBackend`` that times every operation and counts its failures."""

    def __init__(self, backend: LeaseBackend) -> None:
        self.inner = backend
        self.capabilities = backend.capabilities
        self.description = backend.description
        self.observers: list[Callable[[LeaseView], None]] = []
        """Told of every lease a write of this process answered (the lease gauges)."""
        self.deletions: list[Callable[[LeaseView], None]] = []
        """Told of every key a delete of this process removed, with its last record."""
        self.answering = True
        """False while the last operation failed with backend_unavailable (backend_up)."""

    def _observed(self, view: LeaseView) -> LeaseView:
        for observe in self.observers:
            observe(view)
        return view

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await call
        except BackendUnavailable:
            BACKEND_ERRORS.labels(operation).inc()
            self.answering = False
            raise
        except LeaseError:
            self.answering = True  # an answer of the lease rules: the backend answered
            raise
        else:
            self.answering = True
            return result
        finally:
            BACKEND_LATENCY.labels(operation).observe(time.perf_counter() - started)

    async def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        value: str | None = None,
        limit: int = 1,
        may_change_limit: bool = False,
    ) -> LeaseView:
        call = (
            self.inner.acquire(key, holder, ttl, value)
            if limit == 1 and not may_change_limit
            else self.inner.acquire(key, holder, ttl, value, limit, may_change_limit)
        )
        view: LeaseView = await self._timed("acquire", call)
        return self._observed(view)

    async def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None,
        value: str | None = None,
        announce: bool = False,
    ) -> LeaseView:
        call = self.inner.renew(key, holder, fencing_token, ttl, value, announce)
        view: LeaseView = await self._timed("renew", call)
        return self._observed(view)

    async def release(self, key: str, holder: str, fencing_token: int) -> LeaseView:
        call = self.inner.release(key, holder, fencing_token)
        view: LeaseView = await self._timed("release", call)
        return self._observed(view)

    async def revoke(self, key: str) -> LeaseView:
        view: LeaseView = await self._timed("revoke", self.inner.revoke(key))
        return self._observed(view)

    async def delete(self, key: str) -> LeaseView:
        view: LeaseView = await self._timed("delete", self.inner.delete(key))
        for forget in self.deletions:
            forget(view)
        return view

    async def transfer(
        self, key: str, to: str, holder: str | None = None, fencing_token: int | None = None
    ) -> LeaseView:
        call = self.inner.transfer(key, to, holder, fencing_token)
        view: LeaseView = await self._timed("transfer", call)
        return self._observed(view)

    async def get(self, key: str) -> LeaseView:
        view: LeaseView = await self._timed("get", self.inner.get(key))
        return view

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]:
        views: list[LeaseView] = await self._timed("list", self.inner.list(prefix, after, limit))
        return views

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()

    async def wait_for_change(self, timeout: float) -> frozenset[str] | None:
        try:
            return await self.inner.wait_for_change(timeout)
        except BackendUnavailable:
            BACKEND_ERRORS.labels("wait_for_change").inc()
            raise

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (its own extras) passes through.
        return getattr(self.inner, name)
