"""Routes of ``/v1/leases``: each translates a request into one lease-rule call."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from fastapi.routing import APIRoute

from leaderelection_service.api import examples
from leaderelection_service.api.deps import AppSettings, Backend, check_holder
from leaderelection_service.api.operations import OPERATIONS, perform
from leaderelection_service.api.responses import COMMON, WRITES, answer, refused
from leaderelection_service.api.schemas import (
    AcquireBody,
    Lease,
    LeaseList,
    ReleaseBody,
    RenewBody,
    TransferBody,
)
from leaderelection_service.api.security import (
    AdministeredKey,
    Caller,
    ReadableKey,
    TransferableKey,
    WritableKey,
    check_admin,
    require_write,
    scoped_prefix,
    writable_key,
)
from leaderelection_service.lease_errors import InvalidRequest
from leaderelection_service.records import PREFIX_PATTERN, LeaseView, valid_key
from leaderelection_service.slots import for_lookup

router = APIRouter(prefix="/v1/leases", tags=["leases"])


def _example(summary: str, value: object) -> dict[str, dict[str, object]]:
    return {"request": {"summary": summary, "value": value}}


def lease_json(view: LeaseView) -> Response:
    return Response(json.dumps(view.to_public()), media_type="application/json")


def looked_up(view: LeaseView) -> LeaseView:
    """A lookup's view: a semaphore key's fields describe its most recently granted
    slot still held (``slots.for_lookup``); a backend's read describes the slot its
    last write concerned, which is what the watch stream reports."""
    if not view.record.slots:
        return view
    rec = for_lookup(view.record, view.server_time, view.allowance)
    return LeaseView(rec, view.server_time, view.allowance)


@router.post(
    "/{key}/acquire",
    response_model=Lease,
    operation_id="acquireLease",
    responses=answer(
        "The lease, held by the caller: a new term, or its own extended", examples.ACQUIRED
    )
    | refused(*WRITES, "lease_held", "limit_mismatch"),
    summary="Acquire a lease, or extend it if this holder already holds it",
)
async def acquire(
    key: WritableKey,
    body: Annotated[
        AcquireBody,
        Body(openapi_examples=_example("Acquire for 10 s", examples.ACQUIRE_BODY)),
    ],
    backend: Backend,
    settings: AppSettings,
    who: Caller,
) -> Response:
    return lease_json(await perform("acquire", key, body, backend, settings, who))


@router.post(
    "/{key}/renew",
    response_model=Lease,
    operation_id="renewLease",
    responses=answer("The lease, its expiry moved to now + ttl", examples.LEASE)
    | refused(*WRITES, "not_found", "lease_lost"),
    summary="Renew a held lease",
)
async def renew(
    key: WritableKey,
    body: Annotated[
        RenewBody,
        Body(
            openapi_examples=_example(
                f"Renew the term of token {examples.TOKEN}", examples.RENEW_BODY
            )
        ),
    ],
    backend: Backend,
    settings: AppSettings,
) -> Response:
    return lease_json(await perform("renew", key, body, backend, settings))


@router.post(
    "/{key}/release",
    response_model=Lease,
    operation_id="releaseLease",
    responses=answer("The lease, free at once (`held` false)", examples.RELEASED)
    | refused(*WRITES, "not_found", lease_lost="another holder or term has the lease"),
    summary="Release a held lease: free at once, the record and its token are kept",
)
async def release(
    key: WritableKey,
    body: Annotated[
        ReleaseBody,
        Body(
            openapi_examples=_example(
                f"Release the term of token {examples.TOKEN}", examples.RELEASE_BODY
            )
        ),
    ],
    backend: Backend,
    settings: AppSettings,
) -> Response:
    return lease_json(await perform("release", key, body, backend, settings))


@router.post(
    "/{key}/revoke",
    response_model=Lease,
    operation_id="revokeLease",
    responses=answer(
        "The lease, its current term ended now (`held` false, `state` revoked)", examples.REVOKED
    )
    | refused(
        *COMMON,
        "invalid_key",
        "not_found",
        forbidden="revoking needs an admin token whose prefix holds the key",
    ),
    summary="Revoke a lease: end its current term now, whoever holds it (admin)",
)
async def revoke(key: AdministeredKey, backend: Backend) -> Response:
    return lease_json(await backend.revoke(key))


@router.delete(
    "/{key}",
    response_model=Lease,
    operation_id="deleteLease",
    responses=answer(
        "The key is gone; the answer is its last record (as etcd's prev_kv)", examples.RELEASED
    )
    | refused(
        *COMMON,
        "invalid_key",
        "not_found",
        lease_held="the lease is held: revoke it first, or wait for its release or expiry",
        forbidden="deleting needs an admin token whose prefix holds the key",
    ),
    summary="Delete a key whose lease is not held (admin); its tokens never repeat",
)
async def delete(key: AdministeredKey, backend: Backend) -> Response:
    return lease_json(await backend.delete(key))


@router.post(
    "/{key}/transfer",
    response_model=Lease,
    operation_id="transferLease",
    responses=answer(
        "The lease, handed to `to` (`successor`): by the holder its term ended now; by an "
        "operator the term goes on until its holder steps down",
        examples.TRANSFERRED,
    )
    | refused(
        *WRITES,
        "not_found",
        lease_lost="the holder's term is over (or, for an operator, no term is held)",
        forbidden="by the holder: a write token; with `to` alone: an admin token whose "
        "prefix holds the key",
    ),
    summary="Hand a lease to a chosen successor (the holder, or an operator with `to` alone)",
)
async def transfer(
    key: TransferableKey,
    body: Annotated[
        TransferBody,
        Body(
            openapi_examples={
                "holder": {"summary": "By the holder", "value": examples.TRANSFER_BODY},
                "operator": {
                    "summary": "By an operator (admin token)",
                    "value": examples.ADMIN_TRANSFER_BODY,
                },
            }
        ),
    ],
    backend: Backend,
    who: Caller,
) -> Response:
    to = check_holder(body.to, "to")
    if (body.holder is None) != (body.fencing_token is None):
        raise InvalidRequest("holder and fencing_token: send both (the holder) or neither")
    if body.holder is None:
        check_admin(key, who, "transfer")
        return lease_json(await backend.transfer(key, to))
    writable_key(key, require_write(who))
    holder = check_holder(body.holder)
    if to == holder:
        raise InvalidRequest(f"to: {to!r} is the holder itself; name another holder")
    return lease_json(await backend.transfer(key, to, holder, body.fencing_token))


@router.get(
    "/{key}",
    response_model=Lease,
    operation_id="getLease",
    responses=answer("The lease as the service's clock sees it now", examples.LEASE)
    | refused(
        *COMMON, "invalid_key", "not_found", forbidden="the key is outside the token's prefix"
    ),
    summary="Look up a lease",
)
async def lookup(key: ReadableKey, backend: Backend) -> Response:
    return lease_json(looked_up(await backend.get(key)))


def operation_routes() -> dict[str, APIRoute]:
    """The acquire, renew and release routes, by operation (for ``api.hot``)."""
    wanted = {f"{router.prefix}/{{key}}/{op}": op for op in OPERATIONS}
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
    operation_id="listLeases",
    responses=answer("A page of leases; `next_cursor` null on the last", examples.LEASE_LIST)
    | refused(*COMMON, "invalid_prefix", forbidden="the prefix is outside the token's prefix"),
    summary="List leases by key prefix, ordered by key, a page at a time",
)
async def list_leases(
    backend: Backend,
    who: Caller,
    prefix: Annotated[
        str,
        Query(pattern=PREFIX_PATTERN, description="Key prefix.", examples=[examples.PREFIX]),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.", examples=[100])] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="next_cursor of the previous page.",
            examples=[examples.CURSOR],
        ),
    ] = None,
) -> Response:
    prefix = scoped_prefix(prefix, who)  # a scoped token lists within its scope
    after = decode_cursor(cursor) if cursor else None
    views = await backend.list(prefix, after, limit + 1)
    page, more = views[:limit], len(views) > limit
    body = {
        "leases": [looked_up(v).to_public() for v in page],
        "next_cursor": encode_cursor(page[-1].record.key) if more and page else None,
    }
    return Response(json.dumps(body), media_type="application/json")
