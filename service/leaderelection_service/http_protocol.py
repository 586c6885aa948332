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
  request in progress), see that module for the order.

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
        self._closed = False

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
        self.table(self._limits).closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self._closed and not self.transport.is_closing():
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

    # Parser events

    def on_headers_complete(self) -> None:
        self._head_left = None
        self.table(self._limits).request_started(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_read_timer()
        self._head_left = self._limits.max_head_bytes
        self._head_started = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.table(self._limits).request_done(self)

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
        self._unset_keepalive_if_required()
        self.flow.pause_reading()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
