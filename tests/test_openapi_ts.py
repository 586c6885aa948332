"""A TypeScript client generated from openapi.yaml, compiled and run against a live service.

The generators are the ones a TypeScript user reaches for (``openapi-typescript``
for the types, ``openapi-fetch`` for the calls, ``tsc`` to compile), pinned in
``tests/openapi_ts/package-lock.json`` and installed with ``npm ci`` from the
registry into a copy of that directory (the npm cache lives in the system's
temporary directory, so later runs install offline). ``calls.ts`` acquires,
is refused as a rival, renews, gets, lists and releases; what it printed is
checked against what the service says over HTTP. It also holds lines that must
not compile (a body without its ttl, an operation that does not exist), so the
build fails if the generated types stop describing the API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from leaderelection_service.records import parse_time
from support.needs import missing
from support.procs import REPO, ServiceProcess

PROJECT = REPO / "tests" / "openapi_ts"
FILES = ("package.json", "package-lock.json", "tsconfig.json", "calls.ts")
NPM_CACHE = Path(tempfile.gettempdir()) / "leaderelection-npm-cache"
KEY, HOLDER, RIVAL = "ts-client-job", "ts-host-a", "ts-host-b"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} (Node.js)", "`./dev test` installs it with apt-get (packages nodejs, npm)")
    assert path is not None
    return path


def run(argv: list[str], cwd: Path, timeout: float) -> str:
    env = {
        **os.environ,
        "npm_config_cache": str(NPM_CACHE),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript program, its client generated from openapi.yaml, compiled: its directory."""
    node, npm = tool("node"), tool("npm")
    work = tmp_path_factory.mktemp("openapi_ts")
    for name in FILES:
        shutil.copy(PROJECT / name, work / name)
    run([npm, "ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund"], work, 600)
    bins = work / "node_modules" / ".bin"
    schema = work / "build" / "schema.d.ts"
    run(
        [node, str(bins / "openapi-typescript"), str(REPO / "openapi.yaml"), "-o", str(schema)],
        work,
        120,
    )
    run([node, str(bins / "tsc"), "--project", "tsconfig.json"], work, 300)
    assert (work / "build" / "calls.js").is_file()
    return work


def ms(text: str) -> int:
    """Milliseconds since the epoch, truncated as JavaScript's Date keeps them."""
    return (parse_time(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_generated_typescript_client_drives_a_lease(
    compiled: Path, service: ServiceProcess, http: httpx.Client
) -> None:
    out = run(
        [tool("node"), str(compiled / "build" / "calls.js"), service.url, KEY, HOLDER, RIVAL],
        compiled,
        60,
    )
    steps: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        step = json.loads(line)
        steps[step.pop("step")] = step
    assert list(steps) == ["acquire", "refused", "renew", "get", "list", "release"]
    assert all(s["status"] == 200 for name, s in steps.items() if name != "refused")

    acquired = steps["acquire"]["lease"]
    assert acquired["holder"] == HOLDER and acquired["held"] is True and acquired["ttl"] == 30
    token = acquired["fencing_token"]
    # The times a TypeScript program reads are the instants the service meant.
    assert steps["acquire"]["acquired_ms"] == ms(acquired["acquired_at"])
    assert steps["acquire"]["expires_ms"] == ms(acquired["expires_at"])
    assert steps["acquire"]["server_ms"] == ms(acquired["server_time"])

    refused = steps["refused"]
    assert refused == {"status": 409, "error": "lease_held", "holder": HOLDER}

    renewed = steps["renew"]["lease"]
    assert renewed["fencing_token"] == token and renewed["ttl"] == 20
    assert parse_time(renewed["renewed_at"]) >= parse_time(acquired["renewed_at"])
    span = parse_time(renewed["expires_at"]) - parse_time(renewed["renewed_at"])
    assert span == timedelta(seconds=20)

    got = steps["get"]["lease"]
    assert {k: v for k, v in got.items() if k != "server_time"} == {
        k: v for k, v in renewed.items() if k != "server_time"
    }
    assert steps["list"] == {"status": 200, "keys": [KEY], "next_cursor": None}

    released = steps["release"]["lease"]
    assert released["held"] is False and released["fencing_token"] == token
    after = http.get(f"/v1/leases/{KEY}").json()
    assert after["held"] is False and after["holder"] == HOLDER
    assert after["fencing_token"] == token and after["expires_at"] == released["expires_at"]
    # Released for real: the rival's next acquire begins the next term at once.
    taken = http.post(f"/v1/leases/{KEY}/acquire", json={"holder": RIVAL, "ttl": 5})
    assert taken.status_code == 200 and taken.json()["fencing_token"] == token + 1
