"""Watch streams: typed lease events from the service's Server-Sent Events.

Example::

    with client.watch("cron") as events:                # one key
        for event in events:
            print(event.type, event.lease.holder, event.lease.fencing_token)

    async with client.watch(prefix="jobs.") as events:  # AsyncLeaseClient: every key under it
        async for event in events:
            if event.type == "taken_over":
                ...

A stream starts with the current state of each key (``event.replay`` True),
then sends each change: ``acquired``, ``released``, ``expired``, ``revoked``,
``taken_over``, ``deleted`` (an admin removed the key; ``lease`` is its last
record) and, with ``renewed=True``, ``renewed``. Iteration blocks (or
awaits) until the next event and ends when the service closes the stream
(for example on shutdown). A broken connection raises ``TransportError``; a
refused one the mapped error (``InvalidRequest``, ``Unauthorized`` …).
Reconnect with ``last_event_id=event.id`` of the last event seen: that key's
state is not sent again unless it changed.

The wire format is parsed here (no dependency beyond ``httpx``). ``close()``
may be called from another thread to end a blocked iteration at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, cast, get_args

import httpx

from leaderelection import _base
from leaderelection._base import Call
from leaderelection.errors import InternalError, InvalidRequest, LeaseError
from leaderelection.lease import Lease

EventType = Literal[
    "acquired",
    "taken_over",
    "renewed",
    "released",
    "expired",
    "revoked",
    "deleted",
    "successor_named",
    "transferred",
]
EVENT_TYPES = frozenset(get_args(EventType))
KEEPALIVE_TIMEOUT = 45.0
"""No byte for this long (the service sends a keep-alive every 15 s): the stream is dead."""


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """One change of one key, or (``replay``) its state when the stream (re)connected."""

    type: EventType
    key: str
    version: int
    """Strictly increases over a key's events."""
    revision: int
    replay: bool
    lease: Lease
    id: str
    """``KEY:VERSION``: pass as ``last_event_id`` to resume after this event."""

    @property
    def free(self) -> bool:
        """The lease may be acquired now (it was released, revoked, deleted, transferred or
        it expired; after a transfer, by ``lease.successor`` alone for one ttl)."""
        return not self.lease.held


def watch_call(key: str | None, prefix: str | None, renewed: bool) -> Call:
    if key is not None and prefix is not None:
        raise InvalidRequest("watch: give a key or a prefix, not both", status=422)
    params: dict[str, str | int] = {"renewed": "true"} if renewed else {}
    if key is not None:
        return Call("GET", _base._path(key, "watch"), params=params)
    if prefix:
        params["prefix"] = prefix
    return Call("GET", "/v1/watch", params=params)


def stream_headers(last_event_id: str | None) -> dict[str, str]:
    out = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    if last_event_id:
        out["Last-Event-ID"] = last_event_id
    return out


def stream_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, read=max(KEEPALIVE_TIMEOUT, timeout))


class SseParser:
    """The SSE wire format, one line at a time (no I/O).

    ``feed(line)`` returns ``(event, data, id)`` when a blank line completes an
    event that had data, else None. Comments (keep-alives) are ignored.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> tuple[str, str, str | None] | None:
        if line == "":
            done = (self.event, "\n".join(self.data), self.id) if self.data else None
            self._reset()
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.id = value
        return None


def parse_event(event: str, data: str, ident: str | None) -> LeaseEvent | None:
    """The typed event, or None for an event type this client does not know."""
    if event not in EVENT_TYPES:
        return None
    try:
        body: Any = json.loads(data)
        return LeaseEvent(
            type=cast(EventType, event),
            key=str(body["key"]),
            version=int(body["version"]),
            revision=int(body["revision"]),
            replay=bool(body["replay"]),
            lease=Lease.from_json(body["lease"]),
            id=ident or f"{body['key']}:{body['version']}",
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InternalError(f"watch: not a lease event: {exc!r}", status=200) from exc


class _Versions:
    """Drops anything not newer than what was already delivered for its key."""

    def __init__(self, last_event_id: str | None) -> None:
        self.last: dict[str, int] = {}
        if last_event_id:
            key, _, ver = last_event_id.rpartition(":")
            if ver.isdigit():
                self.last[key] = int(ver)

    def fresh(self, event: LeaseEvent) -> bool:
        if event.version <= self.last.get(event.key, -1):
            return False
        self.last[event.key] = event.version
        return True


def _socket_of(response: httpx.Response) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


class Watch:
    """A blocking watch stream (``LeaseClient.watch``): iterate, then ``close()``."""

    def __init__(
        self, http: httpx.Client, call: Call, last_event_id: str | None, timeout: float
    ) -> None:
        self._http = http
        self._call = call
        self._last_event_id = last_event_id
        self._timeout = timeout
        self._versions = _Versions(last_event_id)
        self._cm: Any = None
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def open(self) -> Self:
        """Connect; raises the mapped error if the service refuses."""
        call = self._call
        try:
            self._cm = self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=stream_headers(self._last_event_id),
                timeout=stream_timeout(self._timeout),
            )
            response = self._cm.__enter__()
            if not response.is_success:
                response.read()
                raise _base.error_for(response)
        except httpx.HTTPError as exc:
            self.close()
            raise _base.wrap_transport_error(exc, call) from exc
        except LeaseError:
            self.close()
            raise
        with self._lock:
            closed = self._closed
            if not closed:
                self._response = response
                self._lines = response.iter_lines()
        if closed:  # close() ran while connecting: nobody else will close this one
            self.close()
            response.close()
        return self

    def __iter__(self) -> Iterator[LeaseEvent]:
        if self._response is None and not self._closed:
            self.open()
        parser = SseParser()
        lines = self._lines  # close() from another thread clears the attribute
        try:
            while lines is not None:  # None: closed before it was opened
                try:
                    line = next(lines)
                except StopIteration:
                    return
                except (httpx.HTTPError, httpx.StreamError) as exc:
                    # close() from another thread either breaks a blocked read
                    # (ReadError) or closes the response between two reads
                    # (StreamClosed, a RuntimeError): both are a normal end then.
                    if self._closed:
                        return
                    if isinstance(exc, httpx.StreamError):
                        raise
                    raise _base.wrap_transport_error(exc, self._call) from exc
                done = parser.feed(line)
                if done is None:
                    continue
                event = parse_event(*done)
                if event is not None and self._versions.fresh(event):
                    yield event
        finally:
            self.close()  # also when the caller stops iterating early

    def close(self) -> None:
        """End the stream; an iteration blocked in another thread returns."""
        with self._lock:
            self._closed = True
            response, self._response, self._lines = self._response, None, None
            cm, self._cm = self._cm, None
        if response is not None:
            sock = _socket_of(response)
            if sock is not None:  # wakes a reader blocked in recv (closing would not)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if cm is not None:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncWatch:
    """An asyncio watch stream (``AsyncLeaseClient.watch``): ``async for``, then ``aclose()``."""

    def __init__(
        self, http: httpx.AsyncClient, call: Call, last_event_id: str | None, timeout: float
    ) -> None:
        self._http = http
        self._call = call
        self._last_event_id = last_event_id
        self._timeout = timeout
        self._versions = _Versions(last_event_id)
        self._cm: Any = None
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None

    async def open(self) -> Self:
        call = self._call
        try:
            self._cm = self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=stream_headers(self._last_event_id),
                timeout=stream_timeout(self._timeout),
            )
            response = await self._cm.__aenter__()
            if not response.is_success:
                await response.aread()
                raise _base.error_for(response)
        except httpx.HTTPError as exc:
            await self.aclose()
            raise _base.wrap_transport_error(exc, call) from exc
        except LeaseError:
            await self.aclose()
            raise
        self._response = response
        self._lines = response.aiter_lines()
        return self

    async def __aiter__(self) -> AsyncIterator[LeaseEvent]:
        if self._response is None:
            await self.open()
        parser = SseParser()
        try:
            while self._lines is not None:
                try:
                    line = await anext(self._lines)
                except StopAsyncIteration:
                    return
                except httpx.HTTPError as exc:
                    raise _base.wrap_transport_error(exc, self._call) from exc
                done = parser.feed(line)
                if done is None:
                    continue
                event = parse_event(*done)
                if event is not None and self._versions.fresh(event):
                    yield event
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._response, self._lines = None, None
        if self._cm is not None:
            cm, self._cm = self._cm, None
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["AsyncWatch", "LeaseEvent", "Watch"]
