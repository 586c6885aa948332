"""The attacks ``bench/attack.py`` makes on the service: one small function each.

Example::

    target = Target(port=8080, tokens={"tenant_b": "...", "reader": "..."})
    ops = ATTACKS["slowloris"](target, time.monotonic() + 5)   # returns when the time is up

Each function runs in an attacker process of its own until ``until`` (its
clock: ``time.monotonic``) and returns how many operations it made (requests
sent, connections opened). Loopback only; every loop checks the deadline, so
an attack never outlives its phase by more than a socket timeout (2 s).

Some attacks need a token, as a real one would: the oversized chunked bodies
and the long keys come from another tenant's scoped write token
(``tenant_b``, prefix ``team-b.``), the watch streams from one read token.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TIMEOUT = 2.0


@dataclass(frozen=True)
class Target:
    port: int
    tokens: dict[str, str]
    host: str = "127.0.0.1"

    def auth(self, name: str) -> bytes:
        return f"Authorization: Bearer {self.tokens[name]}\r\n".encode()


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    del soft


def _connect(t: Target) -> socket.socket | None:
    try:
        return socket.create_connection((t.host, t.port), timeout=TIMEOUT)
    except OSError:
        return None


def _closed(sock: socket.socket) -> bool:
    """True once the peer closed ``sock`` (what it sent is discarded)."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _hold(t: Target, until: float, count: int, first: bytes, trickle: bytes = b"") -> int:
    """Keep ``count`` connections open that sent ``first``; replace those the service closes.

    With ``trickle``, each sends one byte of it per second (slowloris).
    """
    _raise_file_limit()
    held: list[socket.socket] = []
    ops = 0
    sent_at = time.monotonic()
    while time.monotonic() < until:
        kept = []
        for s in held:
            if _closed(s):
                s.close()
            else:
                kept.append(s)
        held = kept
        while len(held) < count and time.monotonic() < until:
            s = _connect(t)
            if s is None:
                break
            with contextlib.suppress(OSError):
                s.sendall(first)
            held.append(s)
            ops += 1
        if trickle and time.monotonic() - sent_at >= 1.0:
            sent_at = time.monotonic()
            for s in held:
                with contextlib.suppress(OSError):
                    s.send(trickle[:1])
        time.sleep(0.05)  # the attack's own pace
    for s in held:
        s.close()
    return ops


def big_headers(t: Target, until: float) -> int:
    """Heads of 16 MiB (the service answers 431 after 64 KiB), one after another."""
    chunk = b"a" * (1 << 20)
    ops = 0
    while time.monotonic() < until:
        s = _connect(t)
        if s is None:
            continue
        ops += 1
        with contextlib.suppress(OSError), s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(16):
                if time.monotonic() >= until:
                    break
                s.sendall(chunk)
    return ops


def idle_connections(t: Target, until: float) -> int:
    """2,000 connections that send nothing, renewed as the service closes them."""
    return _hold(t, until, 2000, b"")


def slowloris(t: Target, until: float) -> int:
    """500 connections that sent half a head and add a byte a second."""
    return _hold(t, until, 500, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ", trickle=b"b")


def connection_flood(t: Target, until: float) -> int:
    """Connections opened as fast as possible, each fetching /healthz (no token) then idle."""
    _raise_file_limit()
    held: list[socket.socket] = []
    ops = 0
    while time.monotonic() < until:
        s = _connect(t)
        if s is None:
            continue
        with contextlib.suppress(OSError):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append(s)
        ops += 1
        if len(held) >= 6000:  # the attacker's own descriptors: drop its oldest
            held.pop(0).close()
    for s in held:
        s.close()
    return ops


def _requests(t: Target, until: float, make: Callable[[int], bytes]) -> int:
    """Send ``make(n)`` on one kept-alive connection in a loop, reading each answer."""
    ops = 0
    s: socket.socket | None = None
    while time.monotonic() < until:
        if s is None:
            s = _connect(t)
            if s is None:
                continue
        try:
            s.sendall(make(ops))
            ops += 1
            head = s.recv(65536)
            if not head or b"connection: close" in head.lower():
                s.close()
                s = None
        except OSError:
            s.close()
            s = None
    if s is not None:
        s.close()
    return ops


def chunked_bodies(t: Target, until: float) -> int:
    """Acquires whose chunked body runs past the limit (1 MiB; 413 after 16 KiB)."""
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    head = (
        b"POST /v1/leases/team-b.x/acquire HTTP/1.1\r\nHost: x\r\n"
        + t.auth("tenant_b")
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return _requests(t, until, lambda n: head + chunk * 64 + b"0\r\n\r\n")


def long_keys(t: Target, until: float) -> int:
    """Acquires of ``team-b.`` + 118 'z' (a valid 125-character key) by tenant B."""
    key = "team-b." + "z" * 118

    def make(n: int) -> bytes:
        body = f'{{"holder": "b{n}", "ttl": 1}}'.encode()
        return (
            f"POST /v1/leases/{key}/acquire HTTP/1.1\r\nHost: x\r\n".encode()
            + t.auth("tenant_b")
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return _requests(t, until, make)


def watch_flood(t: Target, until: float) -> int:
    """As many /v1/watch streams as one read token gets (up to 2,000), each read."""
    _raise_file_limit()
    request = b"GET /v1/watch HTTP/1.1\r\nHost: x\r\n" + t.auth("reader") + b"\r\n"
    sel = selectors.DefaultSelector()
    ops = 0
    while time.monotonic() < until:
        while len(sel.get_map()) < 2000 and time.monotonic() < until:
            s = _connect(t)
            if s is None:
                break
            with contextlib.suppress(OSError):
                s.sendall(request)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            ops += 1
        for key, _ in sel.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
    return ops


def metrics_scrape(t: Target, until: float) -> int:
    """GET /metrics in a loop, each read whole (the runner stores 20,000 leases first)."""
    request = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + t.auth("reader") + b"\r\n"
    )
    ops = 0
    while time.monotonic() < until:
        s = _connect(t)
        if s is None:
            continue
        s.settimeout(10.0)  # a scrape of a large store may take seconds
        with contextlib.suppress(OSError), s:
            s.sendall(request)
            while s.recv(1 << 16):
                pass
            ops += 1
    return ops


ATTACKS: dict[str, Callable[[Target, float], int]] = {
    "big-headers": big_headers,
    "idle-connections": idle_connections,
    "slowloris": slowloris,
    "connection-flood": connection_flood,
    "chunked-bodies": chunked_bodies,
    "long-keys": long_keys,
    "watch-flood": watch_flood,
    "metrics-scrape": metrics_scrape,
}
"""Every attack by name, in the order the table lists them."""

DEFENCES = {
    "long-keys": "keys: file names that fit every key, one failed write fails alone",
    "watch-flood": "watch: streams per token capped",
    "metrics-scrape": "metrics: lease gauges not read per scrape",
}
"""Attacks whose defence is a part of the service other than the front door (docs/security.md)."""


def run_attacker(name: str, target: Target, duration: float, go: Any, results: Any) -> None:
    """An attacker process: once ``go`` is set, run attack ``name`` for ``duration`` seconds;
    put ``("ready", 0)`` on ``results`` when loaded, then ``("ops", count)``."""
    results.put(("ready", 0))
    go.wait()
    results.put(("ops", ATTACKS[name](target, time.monotonic() + duration)))
