"""Prometheus metrics: what ``GET /metrics`` exposes.

Example::

    app.add_middleware(RequestMetrics)          # requests by route template and status
    backend = InstrumentedBackend(backend)      # backend latency and errors
    body = render_process() + render_leases(await gauges.counts(top=50), 50, backend.answering)

| metric | type | labels |
|---|---|---|
| ``leaderelection_http_requests_total`` | counter | method, route, status |
| ``leaderelection_http_request_duration_seconds`` | histogram | method, route |
| ``leaderelection_backend_operation_duration_seconds`` | histogram | operation |
| ``leaderelection_backend_errors_total`` | counter | operation |
| ``leaderelection_watch_subscribers`` | gauge | |
| ``leaderelection_watch_events_total`` | counter | type |
| ``leaderelection_watch_dropped_total`` | counter | |
| ``leaderelection_leases`` | gauge | state (held, released, expired) |
| ``leaderelection_lease_transitions`` | gauge | key (top N keys, then ``_other``) |
| ``leaderelection_backend_up`` | gauge | |
| ``leaderelection_leases_age_seconds`` | gauge | |

Cardinality is bounded: ``route`` is the route's template (``/v1/leases/{key}``),
never the raw path (``unmatched`` for anything else); ``method`` is one of the
HTTP verbs or ``other``; ``key`` names at most N keys (setting
``metrics_key_labels``) with the most transitions, and ``_other`` sums the rest
(no key can be called ``_other``: keys start with a letter or digit).

The lease gauges come from ``lease_gauges.LeaseGauges``: this process's
writes and every expiry count at once, other replicas' writes within two
``metrics_refresh_interval`` (a listing of the backend in the background, never
one per scrape); ``leaderelection_leases_age_seconds`` says how old that
listing is. The rest are
per process; with ``--workers N`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` and
every worker's answer sums all workers (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leaderelection_service.errors import BackendUnavailable, LeaseError
from leaderelection_service.lease_gauges import LeaseCounts
from leaderelection_service.records import LeaseView
from leaderelection_service.storage import LeaseBackend

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "_other"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
disable_created_metrics()  # the *_created series double the output and say little here
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "leaderelection_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "leaderelection_http_request_duration_seconds",
    "Time to answer an HTTP request (watch streams excluded: they last).",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_LATENCY = Histogram(
    "leaderelection_backend_operation_duration_seconds",
    "Time the backend took for one operation.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_ERRORS = Counter(
    "leaderelection_backend_errors",
    "Backend operations that failed with backend_unavailable.",
    ["operation"],
)
WATCH_SUBSCRIBERS = Gauge(
    "leaderelection_watch_subscribers",
    "Open watch streams.",
    multiprocess_mode="livesum",
)
WATCH_EVENTS = Counter(
    "leaderelection_watch_events",
    "Lease events sent on watch streams (replays on connect included), by type.",
    ["type"],
)
WATCH_DROPPED = Counter(
    "leaderelection_watch_dropped",
    "Watch subscribers dropped for falling too far behind.",
)


# -- HTTP requests -------------------------------------------------------------


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    if str(scope.get("path", "")).startswith("/static/"):
        return "/static"
    return "unmatched"


class RequestMetrics:
    """Count and time every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        streaming = False

        async def observing_send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            route = route_label(scope)
            REQUESTS.labels(method, route, str(status)).inc()
            if not streaming:
                REQUEST_LATENCY.labels(method, route).observe(time.perf_counter() - started)


# -- the backend ---------------------------------------------------------------


class InstrumentedBackend:
    """A ``LeaseBackend`` that times every operation and counts its failures."""

    def __init__(self, backend: LeaseBackend) -> None:
        self.inner = backend
        self.capabilities = backend.capabilities
        self.description = backend.description
        self.observers: list[Callable[[LeaseView], None]] = []
        """Told of every lease a write of this process answered (the lease gauges)."""
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
        self, key: str, holder: str, ttl: float, value: str | None = None
    ) -> LeaseView:
        call = self.inner.acquire(key, holder, ttl, value)
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

    async def wait_for_change(self, timeout: float) -> None:
        try:
            await self.inner.wait_for_change(timeout)
        except BackendUnavailable:
            BACKEND_ERRORS.labels("wait_for_change").inc()
            raise

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (its own extras) passes through.
        return getattr(self.inner, name)


# -- rendering -----------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render_process() -> bytes:
    """This process's metrics, or every worker's summed in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited() -> None:
    """Forget this worker's live gauges (multiprocess mode; at shutdown)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _LeaseCollector(Collector):
    def __init__(self, counts: LeaseCounts | None, top: int, up: bool) -> None:
        self.counts = counts
        self.top = top
        self.up = up and counts is not None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "leaderelection_backend_up",
            "1 if the backend answered this process's last operation and last listing.",
        )
        up.add_metric([], 1 if self.up else 0)
        yield up
        if self.counts is None:
            return
        c = self.counts
        age = GaugeMetricFamily(
            "leaderelection_leases_age_seconds",
            "Seconds since the listing of the backend the lease gauges rest on began "
            "(this process's writes and expiries count at once).",
        )
        age.add_metric([], round(c.age, 3))
        yield age
        leases = GaugeMetricFamily(
            "leaderelection_leases", "Leases in the backend, by state.", labels=["state"]
        )
        for st, n in (("held", c.held), ("released", c.released), ("expired", c.expired)):
            leases.add_metric([st], n)
        yield leases
        transitions = GaugeMetricFamily(
            "leaderelection_lease_transitions",
            f"Times the holder changed, for the {self.top} keys with the most; "
            f"{OTHER} sums the rest.",
            labels=["key"],
        )
        for key, n in c.top:
            transitions.add_metric([key], n)
        if c.other is not None:
            transitions.add_metric([OTHER], c.other)
        yield transitions


def render_leases(counts: LeaseCounts | None, top: int, up: bool = True) -> bytes:
    """The lease gauges (None: the backend could not be listed) and backend_up."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LeaseCollector(counts, top, up))
    return generate_latest(registry)
