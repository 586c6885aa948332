"""The front door (F1) against a real service: each attack is made, then the service is
shown to hold.

No token is needed for any of these attacks. Each runs while an established
leader renews on one kept-alive connection every 50 ms; the leader must get a
200 for every renewal, on that same connection, and a new client must be
served after the attack. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.procs import ServiceProcess, free_port, wait_until
from support.tokens import TokenSet

READ_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.5
CAP = 24


class Leader:
    """Holds ``key`` and renews it every 50 ms on one connection, in a thread."""

    def __init__(self, port: int, token: str, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.key = key
        lease = self._post("acquire", {"holder": "leader", "ttl": 30})
        assert lease is not None
        self.token = lease["fencing_token"]
        assert self.conn.sock is not None
        self.local = self.conn.sock.getsockname()
        self.statuses: list[int] = []
        self.sockets: set[object] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post(self, op: str, body: dict[str, object]) -> dict[str, object] | None:
        self.conn.request(
            "POST", f"/v1/leases/{self.key}/{op}", body=json.dumps(body), headers=self.headers
        )
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return None
        result: dict[str, object] = json.loads(data)
        return result

    def _run(self) -> None:
        body = {"holder": "leader", "fencing_token": self.token}
        while not self.stop.wait(0.05):  # the renewal rhythm, not a synchronisation
            try:
                ok = self._post("renew", body) is not None
                self.statuses.append(200 if ok else 409)
                assert self.conn.sock is not None
                self.sockets.add(self.conn.sock.getsockname())
            except (OSError, http.client.HTTPException):
                self.statuses.append(0)
                self.conn.close()

    def __enter__(self) -> Leader:
        self.thread.start()
        wait_until(lambda: len(self.statuses) >= 3, 10, what="the leader's first renewals")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        self.conn.close()

    def assert_held(self) -> None:
        """Every renewal was a 200, on the connection the leader opened."""
        assert self.statuses and set(self.statuses) == {200}, self.statuses
        assert self.sockets == {self.local}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    return TokenSet.write(tmp_path_factory.mktemp("auth") / "tokens.json", writer=("write", ""))


def start(tmp: Path, tokens: TokenSet, *flags: str) -> ServiceProcess:
    (tmp / "data").mkdir()
    args = ("--auth-file", str(tokens.path), *flags)
    return ServiceProcess((tmp / "data").as_uri(), extra_args=args, log_path=tmp / "service.log")


@pytest.fixture
def timeouts_service(tmp_path: Path, tokens: TokenSet) -> Iterator[ServiceProcess]:
    flags = ("--read-timeout", str(READ_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT))
    with start(tmp_path, tokens, *flags) as svc:
        yield svc


@pytest.fixture
def capped_service(tmp_path: Path, tokens: TokenSet) -> Iterator[ServiceProcess]:
    # A long read timeout: only the cap may close the flood's connections here.
    with start(tmp_path, tokens, "--max-connections", str(CAP), "--read-timeout", "60") as svc:
        yield svc


@pytest.fixture
def default_service(tmp_path: Path, tokens: TokenSet) -> Iterator[ServiceProcess]:
    with start(tmp_path, tokens) as svc:
        yield svc


def connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def read_state(sock: socket.socket, received: dict[socket.socket, bytes]) -> bool:
    """True once the service closed ``sock``; what it sent is added to ``received``."""
    sock.setblocking(False)  # with a timeout set, recv would wait for data first
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:  # nothing to read yet
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
        received[sock] = received.get(sock, b"") + data


def new_client_is_served(svc: ServiceProcess, tokens: TokenSet) -> None:
    with httpx.Client(base_url=svc.url, headers=tokens.header("writer"), timeout=10) as client:
        resp = client.post("/v1/leases/newcomer/acquire", json={"holder": "n", "ttl": 5})
        assert resp.status_code == 200, resp.text


def test_a_huge_request_head_is_refused_before_it_is_read(
    default_service: ServiceProcess, tokens: TokenSet
) -> None:
    total = 32 << 20  # far past what loopback socket buffers hold
    chunk = b"a" * (256 << 10)
    with Leader(default_service.port, tokens.tokens["writer"], "front-head") as leader:
        sock = connect(default_service.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # reset or broken pipe: the service closed the connection
        reply = b""
        with contextlib.suppress(OSError):
            reply = sock.recv(4096)
        sock.close()
        assert sent < total, "the service read the whole 32 MiB head"
        if reply:  # the answer may be lost to the reset; if it came, it is a 431
            assert reply.startswith(b"HTTP/1.1 431 "), reply
            assert b'"error": "invalid_request"' in reply
        new_client_is_served(default_service, tokens)
    leader.assert_held()


def test_silent_and_half_sent_connections_are_closed_after_the_read_timeout(
    timeouts_service: ServiceProcess, tokens: TokenSet
) -> None:
    port = timeouts_service.port
    with Leader(port, tokens.tokens["writer"], "front-idle") as leader:
        opened = time.monotonic()
        silent = [connect(port) for _ in range(10)]
        half_head = b"POST /v1/leases/k/renew HTTP/1.1\r\nHost: x\r\nConte"
        half = [connect(port, half_head) for _ in range(10)]
        kept = connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        kept_half = connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received: dict[socket.socket, bytes] = {}
        wait_until(
            lambda: read_state(kept_half, received) or kept_half in received,
            10,
            what="the first answer",
        )
        kept_half.sendall(b"GET /heal")  # a kept-alive connection that half-sends its next head
        everyone = [*silent, *half, kept, kept_half]
        closed: dict[socket.socket, float] = {}

        def all_closed() -> bool:
            for s in everyone:
                if s not in closed and read_state(s, received):
                    closed[s] = time.monotonic()
            return len(closed) == len(everyone)

        wait_until(all_closed, 10 * (READ_TIMEOUT + IDLE_TIMEOUT), what="every connection closed")
        for s in silent:
            assert s not in received  # closed without a word
            assert closed[s] - opened >= READ_TIMEOUT
        for s in half:
            assert received[s].startswith(b"HTTP/1.1 408 "), received[s]
        assert received[kept].startswith(b"HTTP/1.1 200 ")  # then closed when idle
        assert b"HTTP/1.1 408 " in received[kept_half]
        for s in everyone:
            s.close()
        new_client_is_served(timeouts_service, tokens)
    leader.assert_held()


def test_a_connection_flood_past_the_cap_spares_renewals_and_new_clients(
    capped_service: ServiceProcess, tokens: TokenSet
) -> None:
    port = capped_service.port
    with Leader(port, tokens.tokens["writer"], "front-flood") as leader:
        # Silent connections, and connections that fetch /healthz then stay idle.
        flood = [connect(port) for _ in range(CAP * 6)]
        flood += [
            connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(CAP * 2)
        ]
        flood += [connect(port) for _ in range(CAP * 2)]
        received: dict[socket.socket, bytes] = {}

        def open_count() -> int:
            return sum(1 for s in flood if not read_state(s, received))

        # The leader holds one of the CAP places; the flood at most the rest.
        wait_until(lambda: open_count() <= CAP - 1, 20, what="the flood cut to the cap")
        new_client_is_served(capped_service, tokens)
        for s in flood:
            s.close()
        wait_until(lambda: len(leader.statuses) >= 20, 20, what="renewals after the flood")
    leader.assert_held()


def _file_limit(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def serve_cmd(data: Path, port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "leaderelection_service.cli", "serve", "--backend-url",
            data.as_uri(), "--port", str(port), "--log-level", "warning", *flags]  # fmt: skip


def test_the_soft_file_limit_is_raised_and_the_default_cap_lowered_to_fit(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            serve_cmd(tmp_path, port),
            stdout=out,
            stderr=out,
            preexec_fn=lambda: _file_limit(256, 1024),
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: proc.poll() is not None or _healthy(port), 20, what="the service to answer"
        )
        assert proc.poll() is None, log.read_text()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+1024\s+1024", limits), limits
        # 1024 files less a backlog of 128 and 64 for the backend
        assert "max_connections lowered from 4096 to 832" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_cap_over_the_file_limit_stops_the_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        serve_cmd(tmp_path, free_port(), "--max-connections", "5000"),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _file_limit(1024, 1024),
        check=False,
    )
    assert proc.returncode == 2
    assert "max_connections (5000) does not fit the open file limit (1024" in proc.stderr


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def fleet_service(tmp_path: Path, tokens: TokenSet) -> Iterator[ServiceProcess]:
    """1,000 leases with 256-character holders (a page of them is about half a MB)."""
    import asyncio

    from leaderelection_service.registry import open_backend
    from leaderelection_service.settings import Settings

    url = (tmp_path / "data").as_uri()
    (tmp_path / "data").mkdir()

    async def fill() -> None:
        backend = open_backend(url, Settings(backend_url=url))
        try:
            await asyncio.gather(
                *(backend.acquire(f"fleet.{i:04}", "h" * 256, 3600.0) for i in range(1000))
            )
        finally:
            await backend.close()

    asyncio.run(fill())
    args = ("--auth-file", str(tokens.path), "--idle-timeout", str(IDLE_TIMEOUT))
    with ServiceProcess(url, extra_args=args, log_path=tmp_path / "service.log") as svc:
        yield svc


def read_all(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """What the service sends until it closes ``sock`` (True) or ``limit`` seconds pass."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            got = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, True
        if not got:
            return data, True
        data += got
    return data, False


def test_pipelined_requests_wait_at_most_the_depth_then_the_connection_closes(
    default_service: ServiceProcess,
) -> None:
    from leaderelection_service.http_protocol import PIPELINE_DEPTH

    sock = connect(default_service.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
    data, closed = read_all(sock, 10)
    sock.close()
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert closed, f"still open after {len(answers)} answers"
    # Requests parsed in a later read may have been answered before the queue filled,
    # but never the whole thousand; the last answer tells the client to reconnect.
    assert PIPELINE_DEPTH < len(answers) < 1000
    assert all(a.startswith(b"200 ") for a in answers)
    assert b"connection: close" in answers[-1].lower()
    assert procs_healthy(default_service.port)


TCP_ESTABLISHED = 1


def server_state(server_port: int, client_port: int) -> int | None:
    """The TCP state of the service's side of a loopback connection (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, st = line.split()[1:4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return int(st, 16)
    return None


def test_a_client_that_reads_no_answer_is_cut_off_after_the_idle_timeout(
    fleet_service: ServiceProcess, tokens: TokenSet
) -> None:
    # 16 pages of 1,000 leases pipelined (8 MB of answers, past the kernel's socket
    # buffers), none read: the answer in progress stalls, and a busy connection is
    # never evicted, so only the write stall frees it.
    auth = f"Authorization: Bearer {tokens.tokens['writer']}\r\n".encode()
    page = b"GET /v1/leases?limit=1000 HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", fleet_service.port))
    sock.sendall(page * 16)
    opened = time.monotonic()

    client_port = sock.getsockname()[1]
    # The service's close waits behind megabytes in its socket: watch its side.
    wait_until(
        lambda: server_state(fleet_service.port, client_port) != TCP_ESTABLISHED,
        30 * IDLE_TIMEOUT,
        what="the service closing the stalled connection",
    )
    assert time.monotonic() - opened >= IDLE_TIMEOUT
    data, closed = read_all(sock, 20)
    sock.close()
    assert closed
    assert data.count(b"HTTP/1.1 200 ") < 16  # cut off before every answer went out
    assert procs_healthy(fleet_service.port)


def procs_healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, _ = read_all(sock, 2)
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200 ")
