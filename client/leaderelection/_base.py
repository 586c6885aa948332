"""What the sync and async clients share, with no I/O: requests and answers.

Example::

    call = requests.acquire("cron", "host-a", 10.0)   # a Call: method, path, body
    lease = parse_lease(response)                     # a Lease, or the mapped error

Each client turns a ``Call`` into an ``httpx`` request and hands the response
back here, so both map the contract the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from leaderelection._version import __version__
from leaderelection.errors import (
    ERRORS_BY_CODE,
    ERRORS_BY_STATUS,
    BackendUnavailable,
    InternalError,
    InvalidRequest,
    LeaseError,
    RequestTimeout,
    ServiceError,
    TooManyRequests,
    TransportError,
)
from leaderelection.lease import Lease

KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PAGE_SIZE = 100
DEFAULT_TIMEOUT = 5.0
USER_AGENT = f"leaderelection-python/{__version__}"


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str | int] | None = None


def _path(key: str, action: str = "") -> str:
    # The key goes into the URL path: refuse anything the service would refuse,
    # so that no "../" or "?" can ever reach another route.
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise InvalidRequest(
            f"key: must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$, got {key!r}", status=422
        )
    return f"/v1/leases/{quote(key, safe='')}" + (f"/{action}" if action else "")


def acquire(key: str, holder: str, ttl: float, value: str | None = None, limit: int = 1) -> Call:
    body: dict[str, Any] = {"holder": holder, "ttl": float(ttl)}
    if value is not None:
        body["value"] = value
    if limit != 1:  # a plain lease's request is as it always was
        body["limit"] = limit
    return Call("POST", _path(key, "acquire"), body)


def renew(
    key: str,
    holder: str,
    fencing_token: int,
    ttl: float | None,
    value: str | None = None,
    announce: bool = False,
) -> Call:
    body: dict[str, Any] = {"holder": holder, "fencing_token": fencing_token}
    if ttl is not None:
        body["ttl"] = float(ttl)
    if value is not None:
        body["value"] = value
        if announce:
            body["announce"] = True
    return Call("POST", _path(key, "renew"), body)


def release(key: str, holder: str, fencing_token: int) -> Call:
    return Call("POST", _path(key, "release"), {"holder": holder, "fencing_token": fencing_token})


def revoke(key: str) -> Call:
    return Call("POST", _path(key, "revoke"), {})


def delete(key: str) -> Call:
    return Call("DELETE", _path(key))


def transfer(key: str, to: str, holder: str | None, fencing_token: int | None) -> Call:
    if not isinstance(to, str) or not to:
        raise ValueError(f"to must name a holder, got {to!r}")
    if (holder is None) != (fencing_token is None):
        raise ValueError("holder and fencing_token: pass both (the holder) or neither (admin)")
    body: dict[str, Any] = {"to": to}
    if holder is not None:
        body |= {"holder": holder, "fencing_token": fencing_token}
    return Call("POST", _path(key, "transfer"), body)


def get(key: str) -> Call:
    return Call("GET", _path(key))


def list_page(prefix: str | None, cursor: str | None, limit: int = PAGE_SIZE) -> Call:
    params: dict[str, str | int] = {"limit": limit}
    if prefix:
        params["prefix"] = prefix
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/v1/leases", params=params)


def headers(token: str | None) -> dict[str, str]:
    out = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    return out


def wrap_transport_error(exc: httpx.HTTPError, call: Call) -> LeaseError:
    """The client's exception for an ``httpx`` failure (raise it ``from exc``)."""
    what = f"{call.method} {call.path}"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"{what}: no answer in time ({type(exc).__name__})")
    return TransportError(f"{what}: {type(exc).__name__}: {exc}")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def error_for(response: httpx.Response) -> ServiceError:
    """The exception for an error answer (any status but 2xx)."""
    body = _json(response)
    code = body.get("error") if isinstance(body, dict) else None
    cls = ERRORS_BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = ERRORS_BY_STATUS.get(response.status_code, InternalError)
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = f"HTTP {response.status_code}: {response.text[:200]!r}"
    lease = None
    if isinstance(body, dict) and body.get("lease") is not None:
        try:
            lease = Lease.from_json(body["lease"])
        except ValueError:
            lease = None
    if cls is BackendUnavailable:
        return BackendUnavailable(
            message, status=response.status_code, lease=lease, retry_after=_retry_after(response)
        )
    if cls is TooManyRequests:
        return TooManyRequests(
            message, status=response.status_code, lease=lease, retry_after=_retry_after(response)
        )
    return cls(message, status=response.status_code, lease=lease)


def parse_lease(response: httpx.Response) -> Lease:
    """The ``Lease`` of a 2xx answer; raises the mapped error otherwise."""
    if not response.is_success:
        raise error_for(response)
    try:
        return Lease.from_json(_json(response))
    except ValueError as exc:
        raise InternalError(
            f"answer is not a lease record: {exc}", status=response.status_code
        ) from exc


def parse_page(response: httpx.Response) -> tuple[list[Lease], str | None]:
    """The leases of one list page and the next cursor (None at the end)."""
    if not response.is_success:
        raise error_for(response)
    body = _json(response)
    try:
        leases = [Lease.from_json(item) for item in body["leases"]]
        cursor = body.get("next_cursor")
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise InternalError(
            f"answer is not a lease list: {exc!r}", status=response.status_code
        ) from exc
    if cursor is not None and not isinstance(cursor, str):
        raise InternalError("answer is not a lease list: bad next_cursor", status=200)
    return leases, cursor
