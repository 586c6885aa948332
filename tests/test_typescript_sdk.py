"""The TypeScript SDK (client/typescript) built and tested against a real service.

``npm ci`` installs the pinned dev dependencies (TypeScript, Node's types)
from package-lock.json, with npm's cache under the package's ``.npm-cache``
(gitignored) so later runs work offline; ``npm run build`` compiles ``dist/``;
``npm test`` runs the SDK's own tests (the step function with a fake clock,
then the client and the elector against the live service this module starts
and names in ``LEADERELECTION_TEST_SERVER``). Then the conformance adapter
``dist/elect.js`` and the example run as processes: what they did is read from
the service over HTTP, not only from what they print.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.needs import tool
from support.procs import REPO, OutputLines, ServiceProcess, wait_until

SDK = REPO / "client" / "typescript"
ADAPTER = SDK / "dist" / "elect.js"
INSTALL = "apt-get install nodejs npm (`./dev test` does it as root)"
EXAMPLE = SDK / "examples" / "lease.mjs"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
    env.update(extra)
    return env


def _npm(npm: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [npm, *args],
        cwd=SDK,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm {' '.join(args)} exited {done.returncode}:\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def node() -> str:
    return tool("node", "Node.js (node)", INSTALL)


@pytest.fixture(scope="module")
def npm(node: str) -> str:
    return tool("npm", "npm", INSTALL)


@pytest.fixture(scope="module")
def built(npm: str) -> Path:
    """``npm ci && npm run build`` in client/typescript, once per module."""
    cache = SDK / ".npm-cache"
    env = _env(npm_config_cache=str(cache), npm_config_update_notifier="false")
    _npm(npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", env=env)
    _npm(npm, "run", "build", env=env)
    assert ADAPTER.is_file(), "npm run build made no dist/elect.js"
    return ADAPTER


def test_npm_test_passes_against_a_live_service(
    npm: str, built: Path, module_service: ServiceProcess
) -> None:
    output = _npm(npm, "test", env=_env(LEADERELECTION_TEST_SERVER=module_service.url))
    # node:test's summary: every test ran (the live ones too) and none failed.
    summary = dict(
        line[2:].split(" ", 1)
        for line in output.splitlines()
        if line.startswith("# ") and " " in line[2:]
    )
    assert summary.get("fail") == "0", output[-4000:]
    assert summary.get("skipped") == "0", output[-4000:]
    assert int(summary.get("pass", "0")) >= 40, output[-4000:]


class JsonLines(OutputLines):
    """A node process printing one JSON object per line, collected as they come."""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out


def adapter(node: str, server: str, key: str, identity: str) -> JsonLines:
    argv = [node, str(ADAPTER), "--server", server, "--key", key, "--identity", identity]
    argv += ["--term", "3", "--renew", "0.75", "--retry", "0.5"]
    return JsonLines(argv, {"PATH": "/usr/bin:/bin"})


@pytest.fixture
def procs() -> Iterator[list[JsonLines]]:
    started: list[JsonLines] = []
    yield started
    for proc in started:
        proc.close()


def test_two_adapters_one_leader_and_handover_on_sigterm(
    node: str, built: Path, service: ServiceProcess, http: httpx.Client, procs: list[JsonLines]
) -> None:
    a = adapter(node, service.url, "ts-handover", "ts-a")
    b = adapter(node, service.url, "ts-handover", "ts-b")
    procs += [a, b]
    wait_until(
        lambda: len(a.events("elected")) + len(b.events("elected")) >= 1,
        20.0,
        what=f"an elected line; a: {a.lines}, b: {b.lines}",
    )
    record = http.get("/v1/leases/ts-handover").json()
    leader, follower = (a, b) if a.events("elected") else (b, a)
    first = leader.events("elected")[0]
    assert first["identity"] == record["holder"] and record["held"] is True
    assert first["fencing_token"] == record["fencing_token"]
    assert isinstance(first["time"], float)

    # Exactly one leader, held for a while: wait for a renewal, then look again.
    def renewed() -> bool:
        now = http.get("/v1/leases/ts-handover").json()
        return bool(now["renewed_at"] > record["renewed_at"])

    wait_until(renewed, 10.0, what="a renewal by the leader")
    assert follower.events("elected") == [], f"two leaders: {a.lines} {b.lines}"

    leader.proc.send_signal(signal.SIGTERM)
    assert leader.proc.wait(timeout=15) == 0
    assert [e["event"] for e in leader.events()] == ["elected", "ousting"], leader.lines
    assert leader.events("ousting")[0]["fencing_token"] == first["fencing_token"]

    wait_until(
        lambda: bool(follower.events("elected")),
        10.0,
        what=f"the follower elected; output: {follower.lines}",
    )
    took_over = follower.events("elected")[0]
    assert took_over["fencing_token"] > first["fencing_token"]
    assert took_over["time"] >= leader.events("ousting")[0]["time"]
    after = http.get("/v1/leases/ts-handover").json()
    assert after["holder"] == took_over["identity"] and after["held"] is True

    follower.proc.send_signal(signal.SIGTERM)
    assert follower.proc.wait(timeout=15) == 0
    assert http.get("/v1/leases/ts-handover").json()["held"] is False, "SIGTERM released"


def test_adapter_ends_on_a_permanent_error_and_refuses_bad_flags(
    node: str, built: Path, service: ServiceProcess
) -> None:
    argv = [node, str(ADAPTER), "--server", service.url, "--key", "ts-refused"]
    refused = subprocess.run(
        [*argv, "--term", "5000", "--renew", "5", "--retry", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1, refused.stderr
    lines = [json.loads(line) for line in refused.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["error"]
    assert "invalid_request" in lines[0]["message"]

    bad = subprocess.run(
        [*argv, "--term", "3", "--renew", "4"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert "rule 0 < renew < term broken" in bad.stderr


def test_example_leads_and_releases_on_sigint(
    node: str, built: Path, service: ServiceProcess, http: httpx.Client, procs: list[JsonLines]
) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEADERELECTION_SERVER": service.url, "LEASE_TTL": "3"}
    example = JsonLines([node, str(EXAMPLE), "ts-example", "host-x"], env)
    procs.append(example)
    wait_until(lambda: bool(example.events("elected")), 20.0, what=f"elected; {example.lines}")
    record = http.get("/v1/leases/ts-example").json()
    assert record["holder"] == "host-x" and record["held"] is True
    assert example.events("elected")[0]["fencing_token"] == record["fencing_token"]

    example.proc.send_signal(signal.SIGINT)
    assert example.proc.wait(timeout=15) == 0
    assert [e["event"] for e in example.events()] == ["elected", "ousting", "released"]
    assert http.get("/v1/leases/ts-example").json()["held"] is False

    bad = subprocess.run(
        [node, str(EXAMPLE), "../etc"], env=env, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "usage" in bad.stderr
