"""``leaderelection run`` against a real service, with real child processes.

The child appends "TAG PID MONOTONIC TOKEN" to a shared file every 0.2 s (and
"... stop" when it gets SIGTERM). ``time.monotonic`` is the system-wide
CLOCK_MONOTONIC on Linux, so lines from different processes compare: the
intervals in which each child wrote must never overlap.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.cli_runs import CliRun, reaped, run_argv
from support.needs import missing
from support.procs import ServiceProcess, wait_until
from support.tokens import TokenSet

TTL = 5.0
RETRY = 0.5


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    # The parent-death signal (prctl PR_SET_PDEATHSIG) is Linux only.
    if not sys.platform.startswith("linux"):
        missing(f"Linux's parent-death signal (this is {sys.platform})", "Run on Linux.")


CHILD = """\
import os, signal, sys, time
tag, path = sys.argv[1], sys.argv[2]
def write(what):
    with open(path, "a") as f:
        f.write(f"{tag} {os.getpid()} {time.monotonic():.3f} {what}\\n")
def stop(signum, frame):
    write("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    write(os.environ["LEADERELECTION_FENCING_TOKEN"])
    time.sleep(0.2)
"""


@dataclass
class Line:
    tag: str
    pid: int
    at: float
    what: str


def lines(path: Path) -> list[Line]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        parts = raw.split()
        if len(parts) == 4:  # a line being written may be cut short
            out.append(Line(parts[0], int(parts[1]), float(parts[2]), parts[3]))
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped by whoever inherited it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Run(CliRun):
    """``leaderelection run`` in a child process, its stderr in a file."""

    def __init__(self, tmp: Path, server: str, key: str, holder: str, *cmd: str, **kw: str):
        flags = [f"--{k}={v}" for k, v in kw.items()]
        argv = run_argv(server, key, holder, ttl=TTL, retry=RETRY)
        super().__init__(tmp / f"{holder}.err", [*argv, *flags, "--", *cmd])


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    with reaped() as started:
        yield started


def child(tmp_path: Path, tag: str) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), tag, str(tmp_path / "out.txt")]


def holder_of(http: httpx.Client, key: str) -> str | None:
    record = http.get(f"/v1/leases/{key}").json()
    return record["holder"] if record.get("held") else None


def test_one_child_at_a_time_and_failover_after_sigkill(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    out = tmp_path / "out.txt"
    a = Run(tmp_path, service.url, "job", "run-a", *child(tmp_path, "A"))
    runs.append(a)
    wait_until(lambda: any(x.tag == "A" for x in lines(out)), 60, what="A's child writing")
    b = Run(tmp_path, service.url, "job", "run-b", *child(tmp_path, "B"))
    runs.append(b)
    wait_until(lambda: b.says("campaigning for job as run-b"), 60, what="B campaigning")
    assert holder_of(http, "job") == "run-a"
    a_child = [x.pid for x in lines(out) if x.tag == "A"][-1]

    a.proc.kill()  # SIGKILL: no chance to stop its child or release
    killed = time.monotonic()
    a.wait()
    wait_until(lambda: not alive(a_child), 10, what="A's child dying with A")
    wait_until(lambda: holder_of(http, "job") == "run-b", TTL + RETRY + 20, what="B elected")
    elected = time.monotonic() - killed
    wait_until(lambda: any(x.tag == "B" for x in lines(out)), 60, what="B's child writing")
    first_b = min(x.at for x in lines(out) if x.tag == "B")
    print(
        f"\nfailover after SIGKILL: elected {elected:.2f} s, child writing "
        f"{first_b - killed:.2f} s (ttl {TTL}, retry {RETRY})"
    )
    # The lease can only pass after it lapses, ttl after A's last renew (sent every
    # ttl / 4, so up to that long before the kill); B notices within retry, or at
    # once from its watch stream.
    assert TTL - TTL / 4 - 0.5 <= elected <= TTL + RETRY + 5

    b.proc.send_signal(signal.SIGTERM)
    assert b.wait() == 0  # the child's own status: it exits 0 on SIGTERM
    assert lines(out)[-1].tag == "B" and lines(out)[-1].what == "stop"
    assert holder_of(http, "job") is None  # released, not left to lapse

    spans: dict[tuple[str, int], list[float]] = {}
    for x in lines(out):
        spans.setdefault((x.tag, x.pid), []).append(x.at)
    intervals = sorted((min(v), max(v), k) for k, v in spans.items())
    assert intervals[0][2][0] == "A" and intervals[-1][2][0] == "B"
    for (_, end, k1), (start, _, k2) in itertools.pairwise(intervals):
        assert end < start, f"{k1} still wrote at {end} after {k2} began at {start}"
    tokens = [int(x.what) for x in lines(out) if x.what != "stop"]
    assert tokens == sorted(tokens) and tokens[-1] > tokens[0]


def test_exit_status_passes_through_and_releases(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    code = "import os, sys; sys.exit(int(os.environ['LEADERELECTION_FENCING_TOKEN']) + 6)"
    seven = Run(tmp_path, service.url, "exit", "run-x", sys.executable, "-c", code)
    runs.append(seven)
    assert seven.wait(60) == 7
    assert seven.says("command exited with status 7; releasing")
    record = http.get("/v1/leases/exit").json()
    assert record["holder"] == "run-x" and record["held"] is False

    killed = Run(
        tmp_path,
        service.url,
        "exit",
        "run-y",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    )
    runs.append(killed)
    assert killed.wait(60) == 128 + signal.SIGKILL


def test_sigterm_stops_a_stubborn_child_after_the_grace(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    ready = tmp_path / "ready"
    stubborn = (
        "import signal, time, pathlib, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"
    )
    run = Run(
        tmp_path,
        service.url,
        "stubborn",
        "run-s",
        sys.executable,
        "-c",
        stubborn,
        str(ready),
        grace="1",
    )
    runs.append(run)
    wait_until(ready.exists, 60, what="the child started")
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGKILL
    took = time.monotonic() - sent
    assert 1.0 <= took < 15, took
    assert holder_of(http, "stubborn") is None


def test_leadership_lost_stops_the_child_and_campaigns_again(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    out = tmp_path / "out.txt"
    run = Run(tmp_path, service.url, "lost", "run-l", *child(tmp_path, "L"))
    runs.append(run)
    wait_until(lambda: any(x.tag == "L" for x in lines(out)), 60, what="the child writing")
    service.pause()  # no renewal can succeed: the elector's deadline passes
    try:
        paused = time.monotonic()
        wait_until(lambda: lines(out)[-1].what == "stop", TTL + 20, what="the child stopped")
        stopped = lines(out)[-1].at
        assert stopped - paused < TTL, "the child must stop before the lease can lapse"
    finally:
        service.resume()
    first = {x.pid for x in lines(out)}
    wait_until(
        lambda: {x.pid for x in lines(out)} - first != set(), 60, what="a new child after resume"
    )
    assert run.says("leadership of lost ended; stopping the command")
    assert run.proc.poll() is None


def test_token_is_sent_and_a_refused_one_ends_the_run(tmp_path: Path, runs: list[Run]) -> None:
    tokens = TokenSet.write(tmp_path / "tokens.json", writer=("write", ""), ro=("read", ""))
    with ServiceProcess(
        (tmp_path / "data").as_uri(), extra_args=("--auth-file", str(tokens.path))
    ) as svc:
        ok = Run(
            tmp_path,
            svc.url,
            "secured",
            "run-t",
            sys.executable,
            "-c",
            "pass",
            token=tokens.tokens["writer"],
        )
        runs.append(ok)
        assert ok.wait(60) == 0
        read_only = Run(
            tmp_path,
            svc.url,
            "secured",
            "run-r",
            sys.executable,
            "-c",
            "pass",
            token=tokens.tokens["ro"],
        )
        runs.append(read_only)
        assert read_only.wait(60) == 2
        assert read_only.says("the service refused the request for good: forbidden (403)")
        assert not read_only.says("(retrying)") and not read_only.says("Traceback")


def test_a_request_the_service_calls_invalid_ends_the_run(tmp_path: Path, runs: list[Run]) -> None:
    """ttl 4000 passes every local rule but is past the service's 3600: 422, status 2."""
    with ServiceProcess((tmp_path / "data").as_uri()) as svc:
        run = Run(tmp_path, svc.url, "too-long", "run-i", "true", ttl="4000")
        runs.append(run)
        assert run.wait(60) == 2
        assert run.says("the service refused the request for good: invalid_request (422)")
        assert not run.says("(retrying)") and not run.says("Traceback"), run.err.read_text()
        assert httpx.get(f"{svc.url}/v1/leases/too-long").status_code == 404  # nothing written


def test_bad_invocations_exit_2(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "leaderelection_service.cli", "run", "--key", "k"]
    no_cmd = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert no_cmd.returncode == 2 and "no command given" in no_cmd.stderr
    bad = subprocess.run(
        [*base, "--ttl", "1", "--grace", "0.9", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "margin" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_value_is_published_while_the_command_runs(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    ready, done = tmp_path / "ready", tmp_path / "done"
    code = (
        "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch()\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.05)"
    )
    cmd = (sys.executable, "-c", code, str(ready), str(done))
    run = Run(tmp_path, service.url, "pub", "run-v", *cmd, value="10.0.0.7:8443 v2")
    runs.append(run)
    wait_until(ready.exists, 60, what="the command starting")
    record = http.get("/v1/leases/pub").json()
    assert (record["holder"], record["state"], record["value"]) == (
        "run-v", "held", "10.0.0.7:8443 v2"
    )  # fmt: skip
    done.touch()
    assert run.wait(60) == 0
    too_big = Run(tmp_path, service.url, "pub2", "run-w", "true", value="x" * 4097)
    runs.append(too_big)
    assert too_big.wait(60) == 2 and too_big.says("4096 bytes")
    assert httpx.get(f"{service.url}/v1/leases/pub2").status_code == 404  # nothing sent


def test_limit_runs_that_many_commands_at_once(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    out = tmp_path / "out.txt"
    for tag in "ABC":
        runs.append(
            Run(tmp_path, service.url, "sem", f"run-{tag}", *child(tmp_path, tag), limit="2")
        )
    wait_until(lambda: len({x.tag for x in lines(out)}) == 2, 60, what="two commands running")
    record = http.get("/v1/leases/sem").json()
    assert record["limit"] == 2 and len(record["holders"]) == 2
    running = {x.tag for x in lines(out)}
    (waiting,) = set("ABC") - running
    first = sorted(running)[0]
    stopped = runs["ABC".index(first)]
    stopped.proc.send_signal(signal.SIGTERM)  # releases its slot
    assert stopped.wait(60) == 0
    wait_until(lambda: any(x.tag == waiting for x in lines(out)), 60, what="the third running")
    tokens = {x.tag: int(x.what) for x in lines(out) if x.what != "stop"}
    assert tokens[waiting] > max(t for tag, t in tokens.items() if tag != waiting)
    bad = Run(tmp_path, service.url, "sem2", "run-x", "true", limit="0")
    runs.append(bad)
    assert bad.wait(60) == 2 and bad.says("limit")
