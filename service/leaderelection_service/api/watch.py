"""Watch streams (Server-Sent Events) and a key's leadership history.

Example::

    curl -N http://127.0.0.1:8080/v1/leases/cron/watch
    curl -N 'http://127.0.0.1:8080/v1/watch?prefix=jobs.&renewed=true'
    curl http://127.0.0.1:8080/v1/leases/cron/history

A stream first sends the current state of every key it covers (events with
``"replay": true``), then each change as it happens. Each event's SSE ``id``
is ``KEY:VERSION`` (see ``events``); on reconnect a client sends the last one
as ``Last-Event-ID`` and is not sent that key's state again unless it changed.
A prefix stream replays every other key's current state on reconnect: clients
keep the highest version per key and drop what is not newer (the SDK and the
dashboard do). Keep-alive comments every 15 s keep proxies from closing an
idle stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from leaderelection_service import metrics
from leaderelection_service.api import examples
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.responses import COMMON, answer, refused, stream
from leaderelection_service.api.schemas import Lease, Timestamp
from leaderelection_service.api.security import Caller, ReadableKey, scoped_prefix
from leaderelection_service.errors import BackendUnavailable, InvalidRequest, LeaseNotFound
from leaderelection_service.events import EVENT_TYPES, WatchEvent, describe
from leaderelection_service.records import HISTORY_LIMIT, PREFIX_PATTERN, LeaseView, valid_key
from leaderelection_service.watch import Subscription, TooManySubscribers, WatchHub, scan

router = APIRouter(prefix="/v1", tags=["watch"])

PING_SECONDS = 15.0
SEND_TIMEOUT = 30.0
"""A client that accepts no bytes for this long is disconnected."""
RETRY_MS = 1000
"""What browsers wait before reconnecting a broken stream."""


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
    ended_by: str | None = Field(description="released | expired; null while the term lasts.")


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
    "another stream (`Retry-After: 5`)",
)


def parse_last_event_id(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    key, _, ver = value.rpartition(":")
    if not valid_key(key) or not ver.isdigit() or len(ver) > 18:
        raise InvalidRequest("Last-Event-ID: must be KEY:VERSION as sent in an event's id")
    return key, int(ver)


def _frame(event: WatchEvent) -> ServerSentEvent:
    metrics.WATCH_EVENTS.labels(event.type).inc()
    return ServerSentEvent(data=event.json(), event=event.type, id=event.id)


class _EndOnShutdown:
    """sse-starlette's ``shutdown_event``: on server shutdown it ends the subscription,
    so the stream's generator returns and the response completes cleanly (instead of
    being cancelled mid-response) and uvicorn need not wait for it."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    def set(self) -> None:
        self.sub.end()


def _stream(
    hub: WatchHub, sub: Subscription, views: list[LeaseView], resume: tuple[str, int] | None
) -> EventSourceResponse:
    async def frames() -> AsyncIterator[ServerSentEvent]:
        last: dict[str, int] = dict([resume]) if resume else {}
        try:
            yield ServerSentEvent(comment="watching", retry=RETRY_MS)
            for view in views:
                event = describe(view, replay=True)
                if event.version > last.get(event.key, -1):
                    last[event.key] = event.version
                    yield _frame(event)
            while True:
                got = await sub.get()
                if got is None:
                    return
                if got.version > last.get(got.key, -1):
                    last[got.key] = got.version
                    yield _frame(got)
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


def _subscribe(hub: WatchHub, **what: Any) -> Subscription:
    try:
        return hub.subscribe(**what)
    except TooManySubscribers as exc:
        raise BackendUnavailable(f"cannot open a watch stream: {exc}", retry_after=5.0) from exc


@router.get(
    "/leases/{key}/watch",
    response_class=EventSourceResponse,
    operation_id="watchLease",
    responses=stream(_STREAM, LeaseEvent, EVENT_TYPES, examples.LEASE_EVENT)
    | refused(*COMMON, "invalid_key", "invalid_last_event_id", **_STREAM_TEXTS),
    summary="Watch one lease: its current state, then every change (Server-Sent Events)",
)
async def watch_key(
    key: ReadableKey,
    backend: Backend,
    hub: Hub,
    renewed: Renewed = False,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    resume = parse_last_event_id(last_event_id)
    if resume is not None and resume[0] != key:
        raise InvalidRequest(f"Last-Event-ID: names key {resume[0]!r}, not {key!r}")
    sub = _subscribe(hub, key=key, renewed=renewed)
    try:
        views = [await backend.get(key)]
    except LeaseNotFound:
        views = []  # never acquired yet: the stream waits for its first acquire
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return _stream(hub, sub, views, resume)


@router.get(
    "/watch",
    response_class=EventSourceResponse,
    operation_id="watchLeases",
    responses=stream(_STREAM, LeaseEvent, EVENT_TYPES, examples.LEASE_EVENT)
    | refused(*COMMON, "invalid_prefix", "invalid_last_event_id", **_STREAM_TEXTS),
    summary="Watch every lease under a key prefix (Server-Sent Events)",
)
async def watch_prefix(
    backend: Backend,
    hub: Hub,
    who: Caller,
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
    sub = _subscribe(hub, prefix=prefix, renewed=renewed)
    try:
        views = await scan(backend, prefix)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return _stream(hub, sub, views, resume)


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
