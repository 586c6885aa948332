"""The FastAPI application factory.

Example::

    uvicorn --factory leaderelection_service.app:create_app
    app = create_app(Settings(backend_url="file:///tmp/leases"))

The app is stateless: every lease lives in the backend named by
``Settings.backend_url``, so any number of replicas may serve one backend
(one host only for ``file://``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from leaderelection_service import __version__, metrics_rendering
from leaderelection_service.api import answers, dashboard, docs, health, hot, leases, watch
from leaderelection_service.api import metrics as metrics_api
from leaderelection_service.api.responses import with_examples, with_models
from leaderelection_service.api.security import AuthGate
from leaderelection_service.auth import TokenTable
from leaderelection_service.failures import Failures
from leaderelection_service.instrumented_backend import InstrumentedBackend
from leaderelection_service.lease_gauges import LeaseGauges
from leaderelection_service.readiness import Readiness
from leaderelection_service.registry import open_backend, redact
from leaderelection_service.request_metrics import RequestMetrics
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend
from leaderelection_service.watch_hub import WatchHub

log = logging.getLogger("leaderelection")

DESCRIPTION = """\
Named leases with a time to live, for leader election over HTTP.

A candidate **acquires** a lease for a key with a ttl; while it holds it, it
**renews** before the ttl runs out, and **releases** it when it stops. Every
new term of a key carries a strictly larger **fencing token**. Every error
answers `{"error": CODE, "message": TEXT, "lease": RECORD-or-null}`.
"""

ROUTERS = (leases.router, health.router, watch.router, metrics_api.router)
"""The API's routes (the dashboard's are not part of it)."""


class LeaseApp(FastAPI):
    """FastAPI behind ``front``: the layers every HTTP request passes first.

    They are plain ASGI callables in front of the framework's own stack
    rather than its middleware, so that a request the hot routes answer never
    enters that stack (its routing, error middleware and per-request
    telemetry checks). Other scopes (lifespan) go straight to FastAPI.
    """

    front: ASGIApp | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with the examples as declared and the watch stream's model.

        See ``api.responses``: FastAPI drops nulls from examples, and cannot
        name a model under ``text/event-stream``.
        """
        if self.openapi_schema is None:
            routes = [route for router in ROUTERS for route in router.routes]
            document = with_examples(super().openapi(), routes)
            self.openapi_schema = with_models(document, watch.LeaseEvent)
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.front is not None:
            scope["app"] = self
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    backend: LeaseBackend | None = None,
    *,
    hot_routes: bool = True,
) -> FastAPI:
    """The app; ``hot_routes=False`` leaves every request to the FastAPI routes (tests)."""
    settings = settings or Settings()
    if backend is None:
        backend = open_backend(settings.backend_url, settings)
    active: LeaseBackend = InstrumentedBackend(backend)
    lease_gauges = LeaseGauges(active, refresh=settings.metrics_refresh_interval)
    active.observers.append(lease_gauges.observe)
    active.deletions.append(lease_gauges.forget)
    tokens = TokenTable.load(settings.auth_file) if settings.auth_file else None
    hub = WatchHub(
        active,
        poll_interval=settings.watch_poll_interval,
        per_owner=settings.watch_streams_per_token,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "leaderelection %s serving backend %s on http://%s:%s",
            __version__,
            redact(active.description),
            settings.host,
            settings.port,
        )
        if tokens is not None:
            log.info("authentication on: %s", tokens.summary())
        else:
            log.info("authentication off: no auth file, every caller may change every lease")
        await hub.start()
        lease_gauges.start()
        # One readiness check at start, in the background (an unreachable
        # backend must not hold up start-up): it logs the backend's warning.
        first_check = asyncio.ensure_future(app.state.readiness.at_start())
        try:
            yield
        finally:
            first_check.cancel()
            await hub.close()
            await lease_gauges.close()
            await active.close()
            metrics_rendering.process_exited()

    app = LeaseApp(
        title="leaderelection",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # api/docs.py serves /docs with local assets, not a CDN's
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.backend = active
    app.state.tokens = tokens
    app.state.hub = hub
    app.state.failures = Failures(redact(active.description))
    app.state.readiness = Readiness(active)
    app.state.lease_gauges = lease_gauges
    answers.install(app)
    app.add_middleware(answers.BodyLimit, limit=settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    docs.install(app)  # before the dashboard's /static mount
    dashboard.install(app)
    # In front of the framework, outermost first: metrics see every answer; the
    # gate lets no request without a token further; the hot routes answer theirs.
    framework: ASGIApp = functools.partial(FastAPI.__call__, app)
    if hot_routes:
        framework = hot.HotRoutes(framework, routes=leases.operation_routes())
    if tokens is not None:
        framework = AuthGate(framework, tokens=tokens)
    app.front = RequestMetrics(framework)
    return app
