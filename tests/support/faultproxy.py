"""An HTTP proxy on loopback that forwards to a real server and injects faults.

Example::

    with FaultProxy(emulator.url) as proxy:
        proxy.fail_next("GET", status=503)                 # answer 503, do not forward
        proxy.fail_next("POST", status=503, forward=True)  # forward, then lose the answer
        proxy.fail_next("GET", delay=3.0)                  # hang before forwarding
        client = make_client(proxy.url)
        proxy.seen                                          # [("GET", "/storage/v1/..."), ...]

For failure paths the real server cannot be made to produce on demand (a
5xx, an answer lost after the write landed, a slow answer); everything else
is the real server's own behaviour.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Fault:
    method: str
    status: int = 503
    forward: bool = False
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hangs up mid-request is no news here


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[str, str]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(
        self, method: str, *, status: int = 503, forward: bool = False, delay: float = 0.0
    ) -> None:
        """The next ``method`` request gets this fault (faults queue up in order)."""
        with self._lock:
            self._faults.append(Fault(method.upper(), status, forward, delay))

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for m, _ in self.seen if m == method.upper())

    def _take(self, method: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method == method:
                    return self._faults.pop(i)
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.seen.append((method, h.path))
        fault = self._take(method)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is None or fault.forward or fault.delay:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            upstream = self._http.request(
                method, self.upstream + h.path, headers=headers, content=body
            )
        if fault is not None and not fault.delay:
            self._reply(h, fault.status, {"content-type": "application/json"}, b'{"error": {}}')
            return
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        out.pop("content-encoding", None)  # httpx already decoded the body
        self._reply(h, upstream.status_code, out, upstream.content)

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
