"""Watch streams (Server-Sent Events) and a key's leadership history.

Example::

    curl -N http://127.0.0.1:8080/v1/leases/cron/watch
    curl -N 'http://127.0.0.1:8080/v1/watch?prefix=jobs.&renewed=true'
    curl http://127.0.0.1:8080/v1/leases/cron/history

A stream first sends the current state of every key it covers (events with
``"replay": true``), read a page at a time while the changes since it
subscribed queue apart (see ``watch_hub``), then each change as it happens.
The first page is sent as soon as it is read, whatever the prefix's size. Each event's SSE ``id``
is ``KEY:VERSION`` (see ``events``); on reconnect a client sends the last one
as ``Last-Event-ID`` and is not sent that key's state again unless it changed.
A prefix stream replays every other key's current state on reconnect: clients
keep the highest version per key and drop what is not newer (the SDK and the
dashboard do). Keep-alive comments every 15 s keep proxies from closing an
idle stream. A stream the service ends (the reader fell too far behind, or
shutdown) ends with a comment that says why (``: closed: …``).

Caps: ``MAX_SUBSCRIBERS`` open streams per process (503, like any exhausted
resource of the service) and ``watch_streams_per_token`` per token, or per
client address without authentication (429 ``too_many_requests``), so one
reader cannot take every slot.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from leaderelection_service import metric_families
from leaderelection_service.api import examples
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.responses import COMMON, answer, refused, stream
from leaderelection_service.api.schemas import Lease, Timestamp
from leaderelection_service.api.security import Caller, ReadableKey, scoped_prefix
from leaderelection_service.auth import OPEN, ApiToken
from leaderelection_service.events import EVENT_TYPES, WatchEvent, describe
from leaderelection_service.lease_errors import (
    BackendUnavailable,
    InvalidRequest,
    LeaseNotFound,
    TooManyRequests,
)
from leaderelection_service.records import HISTORY_LIMIT, PREFIX_PATTERN, LeaseView, valid_key
from leaderelection_service.storage import LeaseBackend
from leaderelection_service.subscription import Subscription, TooManyForOwner, TooManySubscribers
from leaderelection_service.watch_hub import PAGE, WatchHub

router = APIRouter(prefix="/v1", tags=["watch"])

PING_SECONDS = 15.0
SEND_TIMEOUT = 30.0
"""A client that accepts no bytes for this long is disconnected."""
RETRY_MS = 1000
"""What browsers wait before reconnecting a broken stream."""
READY_TIMEOUT = 30.0
"""Longest a new stream waits to be live (it is at once: ``watch_hub``)."""

Pages = Callable[[str | None], Awaitable[list[LeaseView]]]
"""Reads the page of the replay after a key (None: the first page)."""


def get_hub(request: Request) -> WatchHub:
    hub: WatchHub = request.app.state.hub
    return hub


Hub = Annotated[WatchHub, Depends(get_hub)]
Renewed = Annotated[
    bool,
    Query(
        description="Also send `renewed` events (every renewal of every watched lease).",
        examples=[False],
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=200,
        description="`KEY:VERSION` of the last event received: resume after it.",
        examples=[examples.LAST_EVENT_ID],
    ),
]


class LeaseEvent(BaseModel):
    """The JSON `data:` of every event; the SSE `event:` is its `type`, `id` is `KEY:VERSION`."""

    type: str = Field(description=" | ".join(EVENT_TYPES))
    key: str
    version: int = Field(description="Strictly increases over a key's events.")
    revision: int = Field(description="The record's write count.")
    replay: bool = Field(description="The current state, sent when the stream (re)connects.")
    lease: Lease


class TermBody(BaseModel):
    holder: str
    fencing_token: int
    acquired_at: Timestamp = Field(description="RFC 3339 UTC.")
    ended_at: Timestamp | None = Field(description="RFC 3339 UTC; null while the term lasts.")
    ended_by: str | None = Field(
        description="released | expired | revoked | transferred (released naming a "
        "successor); null while the term lasts."
    )
    value: str | None = Field(
        default=None, description="The term's value: the current one, or the last it had."
    )


class LeaseHistory(BaseModel):
    key: str
    limit: int = Field(description="How many terms the backend keeps per key.")
    terms: list[TermBody] = Field(description="Oldest first; the last is the current term.")


_STREAM = (
    "An endless `text/event-stream`: `event:` one of "
    + ", ".join(EVENT_TYPES)
    + "; `id:` KEY:VERSION; `data:` a LeaseEvent as JSON. A stream begins with the current "
    "state of each key it covers (`replay` true). One event as sent:\n\n```\n"
    + examples.STREAM
    + "```"
)
_OUTSIDE = "the key is outside the token's prefix"
_STREAM_TEXTS = dict(
    forbidden="the key or prefix is outside the token's prefix",
    backend_unavailable="the backend cannot be reached, or this process has no room for "
    "another stream, or is shutting down (`Retry-After: 5`)",
)


def parse_last_event_id(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    key, _, ver = value.rpartition(":")
    if not valid_key(key) or not ver.isdigit() or len(ver) > 18:
        raise InvalidRequest("Last-Event-ID: must be KEY:VERSION as sent in an event's id")
    return key, int(ver)


def _frame(event: WatchEvent) -> ServerSentEvent:
    metric_families.WATCH_EVENTS.labels(event.type).inc()
    return ServerSentEvent(data=event.json(), event=event.type, id=event.id)


class _EndOnShutdown:
    """sse-starlette's ``shutdown_event``: on server shutdown it ends the subscription,
    so the stream's generator returns and the response completes cleanly (instead of
    being cancelled mid-response) and uvicorn need not wait for it."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    def set(self) -> None:
        self.sub.end("the service is shutting down")


def _closing(sub: Subscription) -> ServerSentEvent:
    return ServerSentEvent(comment=f"closed: {sub.reason or 'the stream ended'}")


def _stream(
    hub: WatchHub,
    sub: Subscription,
    first: list[LeaseView],
    pages: Pages,
    resume: tuple[str, int] | None,
) -> EventSourceResponse:
    async def frames() -> AsyncIterator[ServerSentEvent]:
        if resume:
            sub.last = dict([resume])
        try:
            yield ServerSentEvent(comment="watching", retry=RETRY_MS)
            page = first
            while True:
                # Changes queued while the page was read go first: a key's
                # replayed state is then sent only if it is newer still.
                for got in sub.drain():
                    if got is None:
                        yield _closing(sub)
                        return
                    if (sent := sub.accept(got)) is not None:
                        yield _frame(sent)
                for view in page:
                    event = sub.accept(describe(view, replay=True))
                    if event is not None:
                        yield _frame(event)
                if len(page) < PAGE:
                    break
                page = await hub.read_page(sub, functools.partial(pages, page[-1].record.key))
            hub.replayed(sub)
            while True:
                got = await sub.get()
                if got is None:
                    yield _closing(sub)
                    return
                if (sent := sub.accept(got)) is not None:
                    yield _frame(sent)
        finally:
            hub.unsubscribe(sub)

    return EventSourceResponse(
        frames(),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        shutdown_event=_EndOnShutdown(sub),  # type: ignore[arg-type]
        shutdown_grace_period=1.0,
    )


def owner(who: ApiToken, request: Request) -> str:
    """Whose cap a stream counts against: the token, or the client address without auth."""
    if who is not OPEN:
        return who.label
    return f"address {request.client.host}" if request.client else "address unknown"


async def _open(
    hub: WatchHub, request: Request, who: ApiToken, pages: Pages, **what: Any
) -> tuple[Subscription, list[LeaseView]]:
    """Subscribe (live at once), read the first page of the replay (errors answer here)."""
    try:
        sub = hub.subscribe(owner=owner(who, request), **what)
    except TooManyForOwner as exc:
        raise TooManyRequests(f"cannot open a watch stream: {exc}") from exc
    except TooManySubscribers as exc:
        message = f"cannot open a watch stream: {exc}"
        raise BackendUnavailable(message, retry_after=5.0, kind=message) from exc
    try:
        await hub.wait_ready(sub, READY_TIMEOUT)
        first = await hub.read_page(sub, functools.partial(pages, None))
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return sub, first


@router.get(
    "/leases/{key}/watch",
    response_class=EventSourceResponse,
    operation_id="watchLease",
    responses=stream(_STREAM, LeaseEvent, EVENT_TYPES, examples.LEASE_EVENT)
    | refused(
        *COMMON, "invalid_key", "invalid_last_event_id", "too_many_requests", **_STREAM_TEXTS
    ),
    summary="Watch one lease: its current state, then every change (Server-Sent Events)",
)
async def watch_key(
    key: ReadableKey,
    backend: Backend,
    hub: Hub,
    who: Caller,
    request: Request,
    renewed: Renewed = False,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    resume = parse_last_event_id(last_event_id)
    if resume is not None and resume[0] != key:
        raise InvalidRequest(f"Last-Event-ID: names key {resume[0]!r}, not {key!r}")

    async def pages(after: str | None) -> list[LeaseView]:
        try:
            return [await backend.get(key)]
        except LeaseNotFound:
            return []  # never acquired yet: the stream waits for its first acquire

    sub, first = await _open(hub, request, who, pages, key=key, renewed=renewed)
    return _stream(hub, sub, first, pages, resume)


def _prefix_pages(backend: LeaseBackend, prefix: str) -> Pages:
    async def pages(after: str | None) -> list[LeaseView]:
        return await backend.list(prefix, after, PAGE)

    return pages


@router.get(
    "/watch",
    response_class=EventSourceResponse,
    operation_id="watchLeases",
    responses=stream(_STREAM, LeaseEvent, EVENT_TYPES, examples.LEASE_EVENT)
    | refused(
        *COMMON, "invalid_prefix", "invalid_last_event_id", "too_many_requests", **_STREAM_TEXTS
    ),
    summary="Watch every lease under a key prefix (Server-Sent Events)",
)
async def watch_prefix(
    backend: Backend,
    hub: Hub,
    who: Caller,
    request: Request,
    prefix: Annotated[
        str,
        Query(
            pattern=PREFIX_PATTERN,
            description="Key prefix; empty: every key.",
            examples=[examples.PREFIX],
        ),
    ] = "",
    renewed: Renewed = False,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    resume = parse_last_event_id(last_event_id)
    prefix = scoped_prefix(prefix, who)  # a scoped token watches within its scope
    pages = _prefix_pages(backend, prefix)
    sub, first = await _open(hub, request, who, pages, prefix=prefix, renewed=renewed)
    return _stream(hub, sub, first, pages, resume)


@router.get(
    "/leases/{key}/history",
    response_model=LeaseHistory,
    operation_id="leaseHistory",
    responses=answer("The key's terms, oldest first", examples.HISTORY)
    | refused(*COMMON, "invalid_key", "not_found", forbidden=_OUTSIDE),
    summary=f"A key's last {HISTORY_LIMIT} leadership terms, kept by the backend",
)
async def history(key: ReadableKey, backend: Backend) -> dict[str, Any]:
    view = await backend.get(key)
    return {
        "key": key,
        "limit": HISTORY_LIMIT,
        "terms": [t.to_public() for t in view.record.history],
    }
