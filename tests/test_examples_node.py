"""The Node.js example (examples/node/lease.mjs) against a real service.

It acquires, renews, refuses to steal, releases on SIGINT, and a waiting
second copy takes over after the release. What each process did is read from
the service over HTTP, not only from what the example prints.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.needs import missing
from support.procs import REPO, OutputLines, ServiceProcess, wait_until

EXAMPLE = REPO / "examples" / "node" / "lease.mjs"


class NodeLease(OutputLines):
    """``node lease.mjs KEY HOLDER`` with its JSON event lines collected as they come."""

    def __init__(self, node: str, server: str, key: str, holder: str, ttl: float) -> None:
        env = {"PATH": "/usr/bin:/bin", "LEADERELECTION_SERVER": server, "LEASE_TTL": str(ttl)}
        super().__init__([node, str(EXAMPLE), key, holder], env)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def wait_for(self, name: str, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        def seen() -> bool:
            if self.proc.poll() is not None and len(self.events(name)) < count:
                raise AssertionError(f"node exited {self.proc.returncode}: {self.lines}")
            return len(self.events(name)) >= count

        wait_until(seen, timeout, what=f"{count} {name!r} event(s); output so far: {self.lines}")
        return self.events(name)[count - 1]


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None:
        missing("Node.js (node)", "`./dev test` installs it with apt-get (package nodejs)")
    assert path is not None
    return path


@pytest.fixture
def leases(node: str, service: ServiceProcess) -> Iterator[list[NodeLease]]:
    started: list[NodeLease] = []
    yield started
    for proc in started:
        proc.close()


def test_node_example_acquires_renews_and_releases(
    node: str, service: ServiceProcess, http: httpx.Client, leases: list[NodeLease]
) -> None:
    first = NodeLease(node, service.url, "node-job", "node-a", ttl=1.5)
    leases.append(first)
    acquired = first.wait_for("acquired")
    record = http.get("/v1/leases/node-job").json()
    assert record["holder"] == "node-a" and record["held"] is True
    assert record["fencing_token"] == acquired["fencing_token"]

    first.wait_for("renewed", count=2)
    renewed = http.get("/v1/leases/node-job").json()
    assert renewed["fencing_token"] == record["fencing_token"]
    assert renewed["renewed_at"] > record["renewed_at"]
    assert renewed["expires_at"] > record["expires_at"]

    second = NodeLease(node, service.url, "node-job", "node-b", ttl=1.5)
    leases.append(second)
    waiting = second.wait_for("waiting")
    assert waiting["leader"] == "node-a"
    assert http.get("/v1/leases/node-job").json()["holder"] == "node-a"

    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=15) == 0
    released = first.wait_for("released")
    assert released["fencing_token"] == record["fencing_token"]

    took_over = second.wait_for("acquired")
    assert took_over["fencing_token"] > record["fencing_token"]
    after = http.get("/v1/leases/node-job").json()
    assert after["holder"] == "node-b" and after["held"] is True


def test_node_example_refuses_a_bad_key(node: str) -> None:
    done = subprocess.run(
        [node, str(EXAMPLE), "../etc"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "usage" in done.stderr
