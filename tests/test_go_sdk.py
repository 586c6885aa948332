"""The Go SDK (client/go): gofmt, ``go vet``, ``go test`` against a live service,
and its conformance adapter (``cmd/elect``) in an election of two processes.

Go runs off the network: ``GOPROXY=off``, ``GOFLAGS=-mod=mod``, caches in a
temporary directory; the SDK uses the standard library only, so nothing is
downloaded. Without ``go`` the tests are skipped, or fail under ``CI=true``
(``support.needs.missing``); ``./dev test`` installs Debian's golang-go.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.needs import tool
from support.procs import (
    REPO,
    OutputLines,
    ServiceProcess,
    secured_service,
    stop_reading,
    wait_until,
)
from support.tokens import TokenSet

GO_DIR = REPO / "client" / "go"
TERM, RENEW, RETRY = 3.0, 0.75, 0.5


@pytest.fixture(scope="module")
def go() -> str:
    return tool(
        "go", "Go (go)", "`./dev test` installs it with apt-get (apt-get install golang-go)"
    )


@pytest.fixture(scope="module")
def go_env(go: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("go")
    return {
        "PATH": f"{Path(go).resolve().parent}:/usr/bin:/bin",
        "HOME": str(home),
        "GOPATH": str(home / "path"),
        "GOCACHE": str(home / "cache"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",  # a newer go never fetches another toolchain
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
    }


def run_go(go: str, env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [go, *args], cwd=GO_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"go {' '.join(args)} failed:\n{output}"
    return output


def test_gofmt_and_go_vet_are_clean(go: str, go_env: dict[str, str]) -> None:
    gofmt = Path(go).resolve().parent / "gofmt"
    unformatted = subprocess.run(
        [str(gofmt), "-l", "."], cwd=GO_DIR, capture_output=True, text=True, timeout=60
    )
    assert unformatted.returncode == 0 and unformatted.stdout == "", unformatted.stdout
    run_go(go, go_env, "vet", "./...")


def test_go_test_against_a_live_service(
    go: str, go_env: dict[str, str], module_service: ServiceProcess
) -> None:
    env = {**go_env, "LEADERELECTION_TEST_SERVER": module_service.url}
    output = run_go(go, env, "test", "-count=1", "-v", "./...")
    # The live tests ran (they skip only without LEADERELECTION_TEST_SERVER).
    assert "--- SKIP" not in output, output
    for name in (
        "TestLiveClientCalls",
        "TestLiveWatch",
        "TestLiveOneLeaderThenHandoverOnStop",
        "TestLiveLeaderStepsDownBeforeExpiryWhenTheServiceHangs",
        "TestLiveAdminTransferHandsOver",
        "TestLiveWatchSurvivesDelete",
        "TestElectionSteps",
        "TestParseHandOverEvents",
    ):
        assert f"--- PASS: {name}" in output, output


@pytest.fixture(scope="module")
def elect(go: str, go_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("bin") / "elect"
    run_go(go, go_env, "build", "-o", str(binary), "./cmd/elect")
    return binary


def seconds_between(start: str, end: str) -> float:
    """Seconds from one RFC 3339 time of the service to another."""
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - begin).total_seconds()


class Elect:
    """One ``cmd/elect`` process; its stdout lines parsed as they come."""

    def __init__(
        self, binary: Path, server: str, key: str, identity: str, log: Path, token: str = ""
    ) -> None:
        self.identity = identity
        self._stderr = open(log, "w")  # noqa: SIM115 - closed in close()
        argv = [str(binary), "--server", server, "--key", key, "--identity", identity]
        argv += ["--term", str(TERM), "--renew", str(RENEW), "--retry", str(RETRY)]
        if token:
            argv += ["--token=" + token]  # a token may begin with "-"
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env={"PATH": "/bin"}
        )
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))  # every line is one JSON object

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == kind]

    def close(self) -> None:
        stop_reading(self.proc, self._reader)
        self._stderr.close()


@pytest.fixture
def electors(elect: Path, module_service: ServiceProcess, tmp_path: Path) -> Iterator[list[Elect]]:
    procs = [
        Elect(elect, module_service.url, "go-elect", f"go-{i}", tmp_path / f"go-{i}.log")
        for i in range(2)
    ]
    yield procs
    for p in procs:
        p.close()


def test_two_go_electors_one_leader_then_handover_on_sigterm(
    electors: list[Elect], module_service: ServiceProcess
) -> None:
    wait_until(lambda: any(p.of("elected") for p in electors), 30, what="a Go elector elected")
    leader = next(p for p in electors if p.of("elected"))
    follower = next(p for p in electors if p is not leader)
    elected = leader.of("elected")[0]
    assert elected["identity"] == leader.identity

    # Let the leader renew twice (the follower meanwhile tries every retry).
    def record() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(
            f"{module_service.url}/v1/leases/go-elect", timeout=10
        ).json()
        return answer

    def renewed_twice() -> bool:
        lease = record()
        renewed_for = seconds_between(lease["acquired_at"], lease["renewed_at"])
        return lease["holder"] == leader.identity and renewed_for >= 2 * RENEW

    wait_until(renewed_twice, 30, what="two renewals by the leader")
    assert record()["fencing_token"] == elected["fencing_token"]
    assert follower.of("elected") == [], "two electors leading one key"

    leader.proc.send_signal(signal.SIGTERM)
    assert leader.proc.wait(timeout=30) == 0
    leader._reader.join(timeout=10)
    ousting = leader.of("ousting")
    assert [e["fencing_token"] for e in ousting] == [elected["fencing_token"]]
    wait_until(lambda: follower.of("elected"), 30, what="the follower elected after SIGTERM")
    taken = follower.of("elected")[0]
    assert taken["fencing_token"] > elected["fencing_token"]
    assert taken["time"] >= ousting[0]["time"]  # one host, one clock: no overlap
    lease = record()
    assert lease["holder"] == follower.identity and lease["held"] is True
    assert lease["fencing_token"] == taken["fencing_token"]


def test_an_admins_transfer_hands_a_go_processs_lease_to_the_named_one(
    elect: Path, module_service: ServiceProcess, tmp_path: Path
) -> None:
    """Row C10 across processes: the operator's transfer (no auth file: admin)
    makes the leading ``cmd/elect`` step down and release, and the waiting one
    named as successor leads before the old term could have lapsed."""
    key = "go-transfer"
    procs = [
        Elect(elect, module_service.url, key, f"go-t{i}", tmp_path / f"go-t{i}.log")
        for i in range(2)
    ]
    try:
        wait_until(lambda: any(p.of("elected") for p in procs), 30, what="a Go elector elected")
        leader = next(p for p in procs if p.of("elected"))
        follower = next(p for p in procs if p is not leader)
        url = f"{module_service.url}/v1/leases/{key}"
        named = httpx.post(f"{url}/transfer", json={"to": follower.identity}, timeout=10)
        assert named.status_code == 200, named.text
        assert named.json()["successor"] == follower.identity
        wait_until(lambda: follower.of("elected"), TERM, what="the successor elected in time")
        assert [e["fencing_token"] for e in leader.of("ousting")] == [
            leader.of("elected")[0]["fencing_token"]
        ]
        assert follower.of("elected")[0]["fencing_token"] > leader.of("elected")[0]["fencing_token"]
        terms = httpx.get(f"{url}/history", timeout=10).json()["terms"]
        assert terms[-2]["holder"] == leader.identity
        assert terms[-2]["ended_by"] == "transferred"  # released by the old leader
        assert leader.proc.poll() is None  # still campaigning
        assert leader.of("error") == []
    finally:
        for p in procs:
            p.close()


def test_the_adapter_refuses_bad_flags(elect: Path) -> None:
    done = subprocess.run(
        [str(elect), "--server", "http://127.0.0.1:1", "--key", "job", "--term", "3"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/bin", **{k: v for k, v in os.environ.items() if k == "LANG"}},
    )
    assert done.returncode == 2
    assert "rule 0 < renew < term broken" in done.stderr
    assert done.stdout == ""


def readme_example() -> str:
    """The Go program of client/go/README.md, as written there."""
    text = (GO_DIR / "README.md").read_text()
    match = re.search(r"^```go\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "no ```go block in client/go/README.md"
    return match.group(1)


def test_readme_example_runs_as_written(
    go: str, go_env: dict[str, str], module_service: ServiceProcess, tmp_path: Path
) -> None:
    source = readme_example()
    assert "http://127.0.0.1:8080" in source
    program = tmp_path / "example"
    program.mkdir()
    (program / "main.go").write_text(source.replace("http://127.0.0.1:8080", module_service.url))
    module = "github.com/leaderelection/leaderelection/client/go"
    (program / "go.mod").write_text(
        f"module example\n\ngo 1.19\n\nrequire {module} v0.0.0\n\nreplace {module} => {GO_DIR}\n"
    )
    done = subprocess.run(
        [go, "build", "-o", str(tmp_path / "example-bin"), "."],
        cwd=program,
        env=go_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = OutputLines([str(tmp_path / "example-bin")], env={"PATH": "/bin"})
    try:
        wait_until(
            lambda: any("elected, token" in line for line in run.lines),
            30,
            what=f"the example elected; output: {run.lines}",
        )
        lease = httpx.get(f"{module_service.url}/v1/leases/nightly-report", timeout=10).json()
        assert lease["held"] is True and lease["holder"] in " ".join(run.lines)
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(timeout=30) == 0, run.lines
    finally:
        run.close()
    assert any("ousting" in line for line in run.lines), run.lines
    lease = httpx.get(f"{module_service.url}/v1/leases/nightly-report", timeout=10).json()
    assert lease["held"] is False  # released on the way out


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenSet]]:
    root = tmp_path_factory.mktemp("secured")
    with secured_service(root, writer=("write", ""), reader=("read", "")) as (svc, tokens):
        yield svc.url, tokens


@pytest.mark.parametrize(
    ("who", "code"), [("writer", None), ("reader", "forbidden"), ("nobody", "unauthorized")]
)
def test_adapter_with_api_tokens(
    elect: Path, secured: tuple[str, TokenSet], tmp_path: Path, who: str, code: str | None
) -> None:
    url, tokens = secured
    token = tokens.tokens.get(who, "")
    proc = Elect(elect, url, f"tok-{who}", f"go-{who}", tmp_path / "elect.log", token=token)
    try:
        if code is None:  # the token is sent: elected, and stopped cleanly
            wait_until(lambda: proc.of("elected"), 30, what=f"elected; {proc.events}")
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(timeout=30) == 0
        else:  # a permanent error: reported once, and the election ends (status 1)
            assert proc.proc.wait(timeout=30) == 1
            proc._reader.join(timeout=10)
            errors = proc.of("error")
            assert len(errors) == 1 and code in errors[0]["message"], proc.events
            assert proc.of("elected") == []
    finally:
        proc.close()


def test_the_main_readmes_go_fragment_builds(
    go: str, go_env: dict[str, str], tmp_path: Path
) -> None:
    """README.md's "Other languages" Go lines, as the body of a main with their imports."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n### Go\n") :]
    match = re.search(r"^```go\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "no ```go block under ### Go in README.md"
    imports = ["context", "log", "os/signal", "syscall", "time"]
    module = "github.com/leaderelection/leaderelection/client/go"
    source = "package main\n\nimport (\n"
    source += "".join(f'\t"{name}"\n' for name in imports)
    source += f'\n\tleaderelection "{module}"\n)\n\nfunc main() {{\n{match.group(1)}}}\n'
    (tmp_path / "main.go").write_text(source)
    (tmp_path / "go.mod").write_text(
        f"module example\n\ngo 1.19\n\nrequire {module} v0.0.0\n\nreplace {module} => {GO_DIR}\n"
    )
    done = subprocess.run(
        [go, "vet", "."], cwd=tmp_path, env=go_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
