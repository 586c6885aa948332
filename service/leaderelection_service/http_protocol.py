"""uvicorn's httptools protocol with the front door's limits: request head size, read
and idle time, connections per process.

Example::

    uvicorn.run(app, http="leaderelection_service.http_protocol:GuardedHttpToolsProtocol",
                timeout_keep_alive=settings.idle_timeout, ws="none")

Per connection:

- **head size**: the bytes of a request head (request line and headers) are
  counted before they reach the parser; at ``max_head_bytes`` without the head
  complete, the answer is 431 and the connection closes. The parser never sees
  more than the limit, so the cost of a head stays bounded whatever follows
  (httptools accumulates a header value by concatenation: its cost grows
  faster than linearly with the value's size);
- **read time**: a request must arrive whole (head and body) within
  ``read_timeout`` seconds, counted from the connection's opening for its first
  request and from its first byte for the next ones; else 408 (or a silent
  close if nothing of a request came) and the connection closes. This closes
  connections that send nothing and those that trickle a head (slowloris) or
  a body;
- **idle time**: uvicorn's own keep-alive timeout (``timeout_keep_alive``)
  closes a connection that sends nothing for ``idle_timeout`` after an answer;
- **count**: a ``connections.ConnectionTable`` per process holds at most
  ``max_connections``; over it, an idle connection is closed (never one with a
  request in progress), see that module for the order;
- **pipelining**: at most ``PIPELINE_DEPTH`` requests wait behind the one being
  answered. uvicorn parses every request a read brings and queues each one
  (and reads again after every answer), so a client that pipelines without
  end grew the queue without bound; past the depth the rest is not parsed,
  the last queued answer says ``connection: close`` and the connection closes
  after it (a pipelining client resends what was not answered, RFC 9112 9.3.2);
- **write stall**: an answer whose bytes the client does not take (the
  transport's buffer above its high-water mark, no drain) for ``idle_timeout``
  seconds is aborted: a client that takes nothing is idle. Without it, a
  client that never reads kept its connection busy, hence never evictable,
  for ever. Not ``read_timeout`` (10 s): a watch stream's own send timeout
  (30 s) must come first, so that a stalled stream ends by its rule, with
  its reason, as before.

Alternatives rejected:

- uvicorn's ``limit_concurrency`` answers 503 to every request, on established
  connections too, once that many connections are open: an attacker with
  idle connections makes a leader's renewal fail;
- uvicorn's h11 protocol and its ``h11_max_incomplete_event_size`` bound the
  head too, but h11 parses every request in pure Python (httptools in C), and
  it neither times out a head nor caps connections, so this subclass would be
  needed anyway;
- a front proxy (nginx ``client_header_buffer_size``, ``client_header_timeout``,
  ``keepalive_timeout``, ``worker_connections``) does all of this, but is one
  more process to deploy and a service exposed without one would stay open to
  the attack; the limits belong to the service;
- a byte count in ``on_header``/``on_url`` (after the parser) comes too late:
  the parser has already accumulated the bytes by then.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from leaderelection_service.connections import ConnectionTable

log = logging.getLogger("leaderelection")

PIPELINE_DEPTH = 16
"""Requests that may wait behind the one being answered on one connection (browsers,
httpx and curl do not pipeline at all; each waiting request holds a parsed head)."""


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int
    read_timeout: float
    max_connections: int


@functools.cache
def _process_limits() -> Limits:
    """The limits of this worker process, from its settings (the environment ``serve`` set)."""
    from leaderelection_service.settings import Settings

    s = Settings()
    return Limits(s.max_head_bytes, s.read_timeout, s.max_connections)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the limits above."""

    limits: ClassVar[Limits | None] = None
    """Set for tests that run uvicorn in process; else read from the settings."""
    _table: ClassVar[ConnectionTable[GuardedHttpToolsProtocol] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = type(self).limits or _process_limits()
        self._limits = limits
        self._head_left: int | None = limits.max_head_bytes
        """Bytes the head being read may still take; None while a body is read."""
        self._head_started = False
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._pipeline_full = False
        """``PIPELINE_DEPTH`` requests wait: nothing more is parsed on this connection."""
        self._discarding = False
        """The message being parsed came past the depth: its callbacks are ignored."""
        self._answering: Any = None
        """The request being answered (uvicorn's ``cycle`` is the newest parsed)."""

    @classmethod
    def table(cls, limits: Limits) -> ConnectionTable[GuardedHttpToolsProtocol]:
        if GuardedHttpToolsProtocol._table is None:
            GuardedHttpToolsProtocol._table = ConnectionTable(limits.max_connections)
        return GuardedHttpToolsProtocol._table

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()
        for victim in self.table(self._limits).opened(self):
            victim._evict()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_read_timer()
        self._cancel_write_timer()
        # uvicorn marks only the newest cycle disconnected; with requests pipelined
        # behind it, the one being answered would write to a closed transport.
        if self._answering is not None and not self._answering.response_complete:
            self._answering.disconnected = True
        self.table(self._limits).closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self._closed and not self.transport.is_closing():
            if self._pipeline_full and self._head_left is not None:
                return  # the connection closes after what is queued: read no further
            if self._head_left is None:  # a body: uvicorn and the app hold it to its limit
                super().data_received(data)
                return
            if self._read_timer is None:  # the first byte of a request on a kept-alive connection
                self._arm_read_timer()
            self._head_started = True
            chunk, data = data[: self._head_left], data[self._head_left :]
            self._head_left -= len(chunk)
            super().data_received(chunk)
            # The head completed within the chunk (None), or a whole request did
            # and the next head's count began (reset); 0: the limit, no head.
            if self._head_left == 0 and not self.transport.is_closing():
                self._refuse(431, f"request head larger than {self._limits.max_head_bytes} bytes")
                return

    # Parser events (past the pipeline's depth, the rest of a read is parsed but ignored:
    # the parser cannot be stopped mid-read, and uvicorn's callbacks would queue it)

    def on_message_begin(self) -> None:
        self._discarding = self._pipeline_full
        if not self._discarding:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._discarding:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._discarding:
            super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if not self._discarding:
            super().on_body(body)

    def on_headers_complete(self) -> None:
        if self._discarding:
            return
        self._head_left = None
        self.table(self._limits).request_started(self)
        super().on_headers_complete()
        if len(self.pipeline) >= PIPELINE_DEPTH:
            self._pipeline_full = True
            self.cycle.keep_alive = False  # its answer says close, then uvicorn closes
            self.flow.pause_reading()

    def on_message_complete(self) -> None:
        if self._discarding:
            return
        super().on_message_complete()
        self._cancel_read_timer()
        self._head_left = self._limits.max_head_bytes
        self._head_started = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.table(self._limits).request_done(self)
        if self._pipeline_full and not self.transport.is_closing():
            self.flow.pause_reading()  # uvicorn resumed it; nothing more is read

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    # Writes

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None and not self._closed:
            timeout = self.timeout_keep_alive  # idle_timeout
            self._write_timer = self.loop.call_later(timeout, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        """The client took no bytes of an answer for ``idle_timeout``: free the connection."""
        self._write_timer = None
        if not self._closed:
            self._close(abort=True)

    # Limits

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self._limits.read_timeout, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self._closed or self.transport.is_closing():
            return
        if self._head_left is not None and not self._head_started:
            self._close(abort=False)  # nothing of a request came: nothing to answer
        elif self._head_left is None and self.cycle.response_started:
            self._close(abort=True)  # answered already (say 401): the body still trickles
        else:
            self._refuse(408, f"request not received within {self._limits.read_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with the contract's error body and close; read nothing more."""
        body = json.dumps({"error": "invalid_request", "message": message, "lease": None}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self._close(abort=False)

    def _evict(self) -> None:
        """Closed to make room for a newer connection (the table chose this one)."""
        self._close(abort=True)  # nothing in progress on it: free the descriptor now

    def _close(self, *, abort: bool) -> None:
        self._closed = True
        self._cancel_read_timer()
        self._cancel_write_timer()
        self._unset_keepalive_if_required()
        self.flow.pause_reading()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
