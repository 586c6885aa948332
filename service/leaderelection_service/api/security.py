"""Authentication at the door, authorization at each route.

Example (a router whose routes only read)::

    router = APIRouter(prefix="/v1/things", dependencies=[Reader])

    @router.post("/{key}/acquire")
    async def acquire(key: WritableKey, ...): ...   # write role, key in the token's prefix

    @router.get("/{key}")
    async def lookup(key: ReadableKey, ...): ...    # any token whose prefix holds the key

``AuthGate`` (ASGI middleware, installed when tokens are configured) denies by
default: every request but those to ``PUBLIC_PATHS`` must carry a valid
``Authorization: Bearer`` token, or it is answered 401 with
``WWW-Authenticate: Bearer`` before any route runs; so a route added without a
dependency, ``/docs`` and ``/openapi.json`` included, is never open. The gate
puts the caller's ``ApiToken`` in the request state; the dependencies here
check its role (403) and its key prefix (403), and declare the bearer scheme in
the OpenAPI document. Without tokens the caller is ``auth.OPEN``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from leaderelection_service.api.answers import error_response
from leaderelection_service.api.deps import Key
from leaderelection_service.auth import OPEN, ApiToken, Role, TokenTable
from leaderelection_service.lease_errors import Forbidden, Unauthorized

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/"})
"""Paths served without a token: the liveness and readiness probes (kubelet and
Docker send no token; they say nothing of leases, nor where the backend is) and
the dashboard's page (it asks for a token to read leases)."""
PUBLIC_PREFIXES = ("/static/",)
"""The dashboard's static files (the same for everyone)."""

REALM = 'Bearer realm="leaderelection"'

bearer = HTTPBearer(
    scheme_name="bearer",
    description="An API token from the service's token file (LEADERELECTION_AUTH_FILE). "
    "Required on every route but /healthz and /readyz when the service has tokens configured; "
    "without a token file the service does not authenticate.",
    auto_error=False,
)


class AuthGate:
    """Answer 401 to any request without a valid bearer token (``PUBLIC_PATHS`` aside).

    The token is read from the ``Authorization`` header only, never from the
    URL, where proxies, logs and browser history would keep it (the dashboard
    reads its stream with ``fetch``, which can send the header).
    """

    def __init__(self, app: ASGIApp, tokens: TokenTable) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            or scope["path"].startswith(PUBLIC_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        presented, problem = self._presented(scope)
        caller = self.tokens.authenticate(presented) if presented is not None else None
        if caller is None:
            if presented is not None:
                problem = "invalid API token"
            challenge = REALM + (', error="invalid_token"' if presented is not None else "")
            response = error_response(
                401, "unauthorized", problem, headers={"WWW-Authenticate": challenge}
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    def _presented(self, scope: Scope) -> tuple[str | None, str]:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() != "bearer" or not credentials.strip():
                    return None, "Authorization must be 'Bearer <token>'"
                return credentials.strip(), ""
        return None, "missing API token: send Authorization: Bearer <token>"


async def caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> ApiToken:
    """The authenticated caller (``OPEN`` without tokens); fails closed."""
    if request.app.state.tokens is None:
        return OPEN
    who: ApiToken | None = getattr(request.state, "caller", None)
    if who is None:  # tokens configured but the gate did not run: never let it through
        raise Unauthorized("missing API token: send Authorization: Bearer <token>")
    return who


Caller = Annotated[ApiToken, Depends(caller)]


def require_read(who: Caller) -> ApiToken:
    return who  # every valid token may read; its prefix is checked per key


def require_write(who: Caller) -> ApiToken:
    if not who.writes:
        raise Forbidden(f"{who.label} may only read; acquire, renew and release need a write token")
    return who


Reader = Depends(require_read)
"""For ``APIRouter(dependencies=[Reader])`` or a route's ``dependencies``."""
Writer = Depends(require_write)


def _outside(key: str, who: ApiToken) -> Forbidden:
    return Forbidden(f"key {key!r} is outside the prefix {who.prefix!r} of {who.label}")


def readable_key(key: Key, who: Caller) -> str:
    if not who.may_read(key):
        raise _outside(key, who)
    return key


def writable_key(key: Key, who: Annotated[ApiToken, Depends(require_write)]) -> str:
    if not who.may_write(key):
        raise _outside(key, who)
    return key


def administered_key(key: Key, who: Caller) -> str:
    if who.role is not Role.ADMIN:
        raise Forbidden(f"{who.label} may not revoke or delete; that needs an admin token")
    if not who.may_administer(key):
        raise _outside(key, who)
    return key


ReadableKey = Annotated[str, Depends(readable_key)]
AdministeredKey = Annotated[str, Depends(administered_key)]
WritableKey = Annotated[str, Depends(writable_key)]


def scoped_prefix(prefix: str, who: ApiToken) -> str:
    """The prefix a listing runs with for ``who`` (see ``ApiToken.list_prefix``)."""
    scoped = who.list_prefix(prefix)
    if scoped is None:
        raise Forbidden(f"prefix {prefix!r} is outside the prefix {who.prefix!r} of {who.label}")
    return scoped
