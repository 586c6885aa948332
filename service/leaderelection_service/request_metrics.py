"""Count and time every HTTP request by method, route template and status.

Example::

    app.front = RequestMetrics(framework)   # outermost: sees every answer (app.py)

An ASGI layer rather than a FastAPI middleware: it sits in front of the hot
routes and the auth gate, so their answers are counted as the routes' are.
Cardinality is bounded: ``route`` is the route's template, never the raw path.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leaderelection_service.metric_families import REQUEST_LATENCY, REQUESTS

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
