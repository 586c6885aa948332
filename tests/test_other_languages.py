"""The README's examples for other languages, run as written against a live service.

The curl walk-through and the shell loop are taken from README.md itself, so
the documentation cannot drift from what the service does.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.needs import tool
from support.procs import REPO, OutputLines, ServiceProcess, wait_until


def readme_block(heading: str, opener: str) -> str:
    """The first fenced block opened by ``opener`` after the README heading ``heading``."""
    text = (REPO / "README.md").read_text()
    start = text.index(heading)
    found = re.compile(rf"^{re.escape(opener)}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    match = found.search(text, start)
    assert match is not None, f"no {opener} block after {heading!r} in README.md"
    return match.group(1)


def json_documents(text: str) -> list[Any]:
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


@pytest.fixture
def curl() -> str:
    return tool(
        "curl", "curl", "install it with your package manager (Debian: apt-get install curl)"
    )


def test_curl_walk_through_as_written(curl: str, service: ServiceProcess) -> None:
    script = readme_block("## A walk through with curl", "```sh")
    script = script.replace("localhost:8080", f"127.0.0.1:{service.port}")
    done = subprocess.run(["bash", "-eu", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    acquired, renewed, valued, looked_up, listed, released = json_documents(done.stdout)
    assert acquired["holder"] == "host-a" and acquired["fencing_token"] == 1
    assert acquired["held"] is True and acquired["state"] == "held"
    assert renewed["fencing_token"] == 1 and renewed["renewed_at"] >= acquired["renewed_at"]
    assert (valued["fencing_token"], valued["value"]) == (1, "10.0.0.7:8443")
    assert looked_up["holder"] == "host-a" and looked_up["held"] is True
    assert looked_up["value"] == "10.0.0.7:8443"
    assert [lease["key"] for lease in listed["leases"]] == ["nightly-report"]
    assert listed["next_cursor"] is None
    assert released["held"] is False and released["fencing_token"] == 1
    assert released["state"] == "released"


class Script(OutputLines):
    """The README's keep-lease.sh, running, with its output collected line by line."""

    def __init__(self, path: Path, server: str, key: str, holder: str, ttl: int) -> None:
        env = {"PATH": "/usr/bin:/bin", "LEADERELECTION_SERVER": server, "TTL": str(ttl)}
        super().__init__(["bash", str(path), key, holder], env)


def test_shell_loop_keeps_and_releases_a_lease(
    curl: str, service: ServiceProcess, http: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "keep-lease.sh"
    path.write_text(readme_block("### A shell loop that keeps a lease", "```bash"))
    first = Script(path, service.url, "shell-job", "shell-a", ttl=6)
    second: Script | None = None
    try:
        wait_until(
            lambda: "leading shell-job with fencing token 1" in first.lines,
            20.0,
            what=f"the script leading; output: {first.lines}",
        )
        start = http.get("/v1/leases/shell-job").json()
        assert start["holder"] == "shell-a" and start["held"] is True

        def renewed() -> bool:
            now = http.get("/v1/leases/shell-job").json()
            return bool(now["renewed_at"] > start["renewed_at"] and now["fencing_token"] == 1)

        wait_until(renewed, 20.0, what="a renewal by the script")

        second = Script(path, service.url, "shell-job", "shell-b", ttl=6)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=15) == 0
        wait_until(
            lambda: "released shell-job" in first.lines,
            30.0,
            what=f"the release; output: {first.lines}",
        )

        def taken_over() -> bool:
            return http.get("/v1/leases/shell-job").json()["holder"] == "shell-b"

        wait_until(taken_over, 20.0, what="the second script taking over")
        after = http.get("/v1/leases/shell-job").json()
        assert after["fencing_token"] == 2 and after["held"] is True
        wait_until(
            lambda: "leading shell-job with fencing token 2" in second.lines,
            30.0,
            what=f"the second script saying it leads; output: {second.lines}",
        )
    finally:
        first.close()
        if second is not None:
            second.close()
