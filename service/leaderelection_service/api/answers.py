"""Every error answer uses the contract's body ``{"error", "message", "lease"}``.

One handler per exception family maps it to a status and a code; no stack
trace ever reaches a client (unexpected errors are logged and answered as
``internal``), and no backend detail either: ``backend_unavailable`` answers
name the kind of failure, the log keeps the detail (``failures``).
``BodyLimit`` refuses oversized bodies (413), with or without a declared
length, before they are read whole.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from leaderelection_service.api.bodies import read_body, replay
from leaderelection_service.failures import Failures
from leaderelection_service.lease_errors import (
    BackendUnavailable,
    LeaseError,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger("leaderelection")

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
}


def error_response(
    status: int,
    code: str,
    message: str,
    lease: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message, "lease": lease}, status_code=status, headers=headers
    )


def lease_error_response(exc: LeaseError, failures: Failures) -> JSONResponse:
    """The answer to ``exc``; a backend's failure answers its kind only and is logged."""
    headers = None
    message = exc.message
    if isinstance(exc, BackendUnavailable | TooManyRequests):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if isinstance(exc, BackendUnavailable):
            message = failures.public(exc)
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="leaderelection"'}
    lease = exc.lease.to_public() if exc.lease is not None else None
    return error_response(exc.status, exc.code, message, lease, headers)


def unexpected_error_response(method: str, path: str) -> JSONResponse:
    """A bug: logged with its trace (call it in an ``except``), answered without one."""
    log.exception("unexpected error on %s %s", method, path)
    return error_response(500, "internal", "internal error; see the service log")


def _describe(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = e.get("msg", "invalid")
        if e.get("type") in ("model_attributes_type", "dict_type", "missing") and loc == "body":
            msg = "must be a JSON object (send Content-Type: application/json)"
        elif e.get("type") == "json_invalid":
            msg = "malformed JSON"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(LeaseError)
    async def _lease_error(request: Request, exc: LeaseError) -> JSONResponse:
        return lease_error_response(exc, request.app.state.failures)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot even decode (not UTF-8): to the
            # contract that is malformed JSON like any other, 422 invalid_request.
            return error_response(422, "invalid_request", "body: malformed JSON")
        code = _HTTP_CODES.get(exc.status_code, "invalid_request")
        if exc.status_code >= 500:
            code = "internal"
        message = str(exc.detail) if exc.status_code != 404 else f"no route {request.url.path}"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(request.method, request.url.path)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 ``invalid_request``."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                else:
                    # The server holds the body to its declared length: nothing to count.
                    await self.app(scope, receive, send)
                return
        if not any(name == b"transfer-encoding" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)  # no body at all
            return
        # No length declared (chunked): the body is read here, to the limit, and
        # handed on. Counting in a wrapped ``receive`` instead comes too late:
        # FastAPI turns what that raises while it reads the body into its own 400.
        body, tail = await read_body(receive, self.limit)
        if body is None:
            await self._refuse(send)
            return
        await self.app(scope, replay(body, tail, receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "invalid_request",
                "message": f"request body larger than {self.limit} bytes",
                "lease": None,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
