"""A Server-Sent Events reader for tests: a background thread collects events.

Example::

    with SseReader(svc.url + "/v1/watch?prefix=k") as events:
        httpx.post(...)
        ev = events.next(timeout=5)      # Sse(event="acquired", id="k:2", data={...})

It parses the wire format itself (independent of the client SDK, which it
helps to test) and keeps the raw lines of each event.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


@dataclass(frozen=True)
class Sse:
    event: str
    id: str | None
    data: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.data["key"])

    @property
    def holder(self) -> str:
        return str(self.data["lease"]["holder"])


class SseReader:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = {"Accept": "text/event-stream", **(headers or {})}
        self.events: queue.Queue[Sse | BaseException | None] = queue.Queue()
        self.status: int | None = None
        self.comments: list[str] = []
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as resp:
                self.status = resp.status_code
                stream = resp.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream else None
                self._connected.set()
                if resp.status_code != 200:
                    resp.read()
                    self.events.put(None)
                    return
                event, data, ident = "message", [], None
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if data:
                            self.events.put(Sse(event, ident, json.loads("\n".join(data))))
                        event, data, ident = "message", [], None
                    elif line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        elif name == "id":
                            ident = value
            self.events.put(None)
        except BaseException as exc:  # handed to the test thread
            if not self._stop.is_set():
                self.events.put(exc)
        finally:
            self._connected.set()

    def start(self, timeout: float = 10.0) -> SseReader:
        self._thread.start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"no answer from {self.url} within {timeout} s")
        return self

    def next(self, timeout: float = 10.0) -> Sse:
        """The next event; raises if the stream ended or nothing came in time."""
        try:
            got = self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout} s") from None
        if got is None:
            raise EOFError("the stream ended")
        if isinstance(got, BaseException):
            raise got
        return got

    def take(self, n: int, timeout: float = 10.0) -> list[Sse]:
        return [self.next(timeout) for _ in range(n)]

    def ended(self, timeout: float = 10.0) -> bool:
        """True once the server closed the stream (events before the end are skipped)."""
        try:
            while True:
                got = self.events.get(timeout=timeout)
                if got is None:
                    return True
                if isinstance(got, BaseException):
                    return True
        except queue.Empty:
            return False

    def close(self) -> None:
        self._stop.set()
        if self._socket is not None:
            # Unblocks the reader thread's recv at once (closing the client would not).
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SseReader:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
