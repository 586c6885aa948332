"""Routes of ``/v1/leases``: each translates a request into one lease-rule call."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.routing import APIRoute

from leaderelection_service.api.deps import (
    AppSettings,
    Backend,
    check_holder,
    check_ttl,
    check_value,
)
from leaderelection_service.api.schemas import (
    AcquireBody,
    ErrorBody,
    Lease,
    LeaseList,
    ReleaseBody,
    RenewBody,
)
from leaderelection_service.api.security import (
    AdministeredKey,
    Caller,
    ReadableKey,
    WritableKey,
    scoped_prefix,
)
from leaderelection_service.errors import InvalidRequest
from leaderelection_service.records import PREFIX_PATTERN, LeaseView, valid_key

router = APIRouter(prefix="/v1/leases", tags=["leases"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        401: "unauthorized: no valid API token",
        403: "forbidden: the token may not do this",
        413: "invalid_request: body too large",
        422: "invalid_request: malformed body, bad key, ttl out of range",
        500: "internal",
        503: "backend_unavailable, with Retry-After",
    }.items()
}


def _errors(**extra: str) -> dict[int | str, dict[str, Any]]:
    out = dict(_ERRORS)
    for status, text in extra.items():
        out[int(status[1:])] = {"model": ErrorBody, "description": text}
    return out


def lease_json(view: LeaseView) -> Response:
    return Response(json.dumps(view.to_public()), media_type="application/json")


@router.post(
    "/{key}/acquire",
    response_model=Lease,
    responses=_errors(s409="lease_held: another holder has it (the current record is in `lease`)"),
    summary="Acquire a lease, or extend it if this holder already holds it",
)
async def acquire(
    key: WritableKey, body: AcquireBody, backend: Backend, settings: AppSettings
) -> Response:
    holder, ttl = check_holder(body.holder), check_ttl(body.ttl, settings)
    view = await backend.acquire(key, holder, ttl, check_value(body.value))
    return lease_json(view)


@router.post(
    "/{key}/renew",
    response_model=Lease,
    responses=_errors(
        s404="not_found: the key was never acquired",
        s409="lease_lost: another holder or term has it, or it was released",
    ),
    summary="Renew a held lease",
)
async def renew(
    key: WritableKey, body: RenewBody, backend: Backend, settings: AppSettings
) -> Response:
    holder = check_holder(body.holder)
    ttl = None if body.ttl is None else check_ttl(body.ttl, settings)
    value = check_value(body.value)
    view = await backend.renew(key, holder, body.fencing_token, ttl, value, body.announce)
    return lease_json(view)


@router.post(
    "/{key}/release",
    response_model=Lease,
    responses=_errors(
        s404="not_found: the key was never acquired",
        s409="lease_lost: another holder or term has it",
    ),
    summary="Release a held lease: free at once, the record and its token are kept",
)
async def release(key: WritableKey, body: ReleaseBody, backend: Backend) -> Response:
    view = await backend.release(key, check_holder(body.holder), body.fencing_token)
    return lease_json(view)


@router.post(
    "/{key}/revoke",
    response_model=Lease,
    responses=_errors(
        s403="forbidden: revoking needs an admin token (whose prefix holds the key)",
        s404="not_found: the key was never acquired",
    ),
    summary="Revoke a lease: end its current term now, whoever holds it (admin)",
)
async def revoke(key: AdministeredKey, backend: Backend) -> Response:
    return lease_json(await backend.revoke(key))


@router.get(
    "/{key}",
    response_model=Lease,
    responses=_errors(s404="not_found: the key was never acquired"),
    summary="Look up a lease",
)
async def lookup(key: ReadableKey, backend: Backend) -> Response:
    return lease_json(await backend.get(key))


def operation_routes() -> dict[str, APIRoute]:
    """The acquire, renew and release routes, by operation (for ``api.hot``)."""
    wanted = {f"{router.prefix}/{{key}}/{op}": op for op in ("acquire", "renew", "release")}
    return {
        wanted[r.path]: r for r in router.routes if isinstance(r, APIRoute) and r.path in wanted
    }


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = ""
    if not valid_key(key):
        raise InvalidRequest("cursor: not a cursor this service issued")
    return key


@router.get(
    "",
    response_model=LeaseList,
    responses=_errors(),
    summary="List leases by key prefix, ordered by key, a page at a time",
)
async def list_leases(
    backend: Backend,
    who: Caller,
    prefix: Annotated[str, Query(pattern=PREFIX_PATTERN, description="Key prefix.")] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="next_cursor of the previous page."),
    ] = None,
) -> Response:
    prefix = scoped_prefix(prefix, who)  # a scoped token lists within its scope
    after = decode_cursor(cursor) if cursor else None
    views = await backend.list(prefix, after, limit + 1)
    page, more = views[:limit], len(views) > limit
    body = {
        "leases": [v.to_public() for v in page],
        "next_cursor": encode_cursor(page[-1].record.key) if more and page else None,
    }
    return Response(json.dumps(body), media_type="application/json")
