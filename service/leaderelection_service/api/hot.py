"""The hot routes (acquire, renew, release) answered without the framework's per-request work.

Example::

    front = RequestMetrics(AuthGate(HotRoutes(framework, routes=...), tokens))   # see app.py

Every holder renews every few seconds, so these three routes are nearly all of
a lease service's traffic. FastAPI spends more CPU on each of them (routing,
dependency injection, the request object) than the lease rules do. This
layer serves a request that is well formed and allowed, with the same pieces
the routes use: the same pydantic body models (validated from the raw bytes),
the same token checks, the same ``operations.perform`` (the checks and the
backend call) and the same error answers; so the answer is the route's,
byte for byte (``tests/test_hot_routes.py`` sends each request both ways).

Anything else (a body that does not validate, a missing or foreign token, a
content type other than JSON, a body without a declared length or over the
limit) goes on to the FastAPI route with the body
replayed, and the route gives the detailed answer. The routes stay the
definition of the API and of openapi.yaml; this layer only skips the work
between the socket and them on the common path.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from leaderelection_service.api.answers import lease_error_response, unexpected_error_response
from leaderelection_service.api.bodies import read_body, replay
from leaderelection_service.api.operations import perform
from leaderelection_service.api.schemas import AcquireBody, ReleaseBody, RenewBody
from leaderelection_service.auth import OPEN, ApiToken
from leaderelection_service.lease_errors import LeaseError
from leaderelection_service.records import KEY_PATTERN, LeaseView
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend

log = logging.getLogger("leaderelection")

_PATH = re.compile(r"/v1/leases/(" + KEY_PATTERN.strip("^$") + r")/(acquire|renew|release)")
_JSON = b"application/json"
_HEADERS = [(b"content-type", _JSON)]


@dataclass(frozen=True, slots=True)
class _Op:
    model: type[BaseModel]
    route: Any
    """The FastAPI route of this operation: the metrics label it under its template."""


class HotRoutes:
    """ASGI layer: answer a valid, allowed acquire/renew/release; pass on everything else."""

    def __init__(self, app: ASGIApp, routes: dict[str, Any]) -> None:
        self.app = app
        self.ops = {
            "acquire": _Op(AcquireBody, routes["acquire"]),
            "renew": _Op(RenewBody, routes["renew"]),
            "release": _Op(ReleaseBody, routes["release"]),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PATH.fullmatch(scope["path"])
            if match is not None and _served(scope, scope["app"].state.settings.max_body_bytes):
                await self._serve(match[1], self.ops[match[2]], match[2], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, key: str, op: _Op, name: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        read, tail = await read_body(receive)
        body = read or b""
        app = scope["app"]
        who = _caller(scope, app.state.tokens is not None)
        try:
            if who is None or not who.may_write(key):
                raise _PassOn  # the route says why (401 / 403)
            try:
                req: Any = op.model.model_validate_json(body)
            except ValidationError:
                raise _PassOn from None  # the route describes what is wrong (422)
        except _PassOn:
            await self.app(scope, replay(body, tail, receive), send)
            return
        scope["route"] = op.route
        backend: LeaseBackend = app.state.backend
        settings: Settings = app.state.settings
        try:
            view = await perform(name, key, req, backend, settings, who)
        except LeaseError as exc:
            await lease_error_response(exc, app.state.failures)(scope, receive, send)
            return
        except Exception:  # nothing sent yet: answered as the framework's handler would
            await unexpected_error_response("POST", scope["path"])(scope, receive, send)
            return
        await _answer(view, send)


class _PassOn(Exception):
    """Not for this layer: the FastAPI route answers."""


def _served(scope: Scope, limit: int) -> bool:
    """A JSON body of a declared length within ``limit`` (the rest: the route and its limits)."""
    json_body = sized = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            json_body = value.partition(b";")[0].strip().lower() == _JSON
        elif name == b"content-length":
            sized = value.isdigit() and int(value) <= limit
    return json_body and sized


def _caller(scope: Scope, authenticating: bool) -> ApiToken | None:
    if not authenticating:
        return OPEN
    caller: ApiToken | None = scope.get("state", {}).get("caller")
    return caller


async def _answer(view: LeaseView, send: Send) -> None:
    payload = json.dumps(view.to_public()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(payload)).encode()), *_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": payload})
