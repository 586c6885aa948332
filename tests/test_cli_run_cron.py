"""``leaderelection run`` for cron: ``--no-wait``, ``--timeout``, ``--hold-after``.

Real ``run`` processes against a real service. The command writes a marker
file named after its holder, holding its fencing token, so the test counts
how many copies ran it. Every wait polls an observable condition (a file, a
lookup, an exit) with a deadline.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leaderelection_service.commands.run import HELD, TIMED_OUT
from support.cli_runs import CliRun, reaped, run_argv
from support.procs import ServiceProcess, wait_until

TTL = 5.0
RETRY = 0.5
MARK = """\
import os, pathlib, sys, time
marks, status, go = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
(marks / os.environ["LEADERELECTION_HOLDER"]).write_text(os.environ["LEADERELECTION_FENCING_TOKEN"])
while go and not pathlib.Path(go[0]).exists():  # the test says when to exit
    time.sleep(0.05)
sys.exit(status)
"""


class Run(CliRun):
    """``leaderelection run … -- python -c MARK DIR STATUS`` in a child process."""

    WAIT = 60.0

    def __init__(
        self,
        tmp: Path,
        server: str,
        key: str,
        holder: str,
        *flags: str,
        status: int = 0,
        go: Path | None = None,
    ) -> None:
        self.holder = holder
        self.marks = tmp / "marks"
        self.marks.mkdir(exist_ok=True)
        argv = run_argv(server, key, holder, ttl=TTL, retry=RETRY)
        cmd = [sys.executable, "-c", MARK, str(self.marks), str(status)]
        cmd += [str(go)] if go is not None else []
        super().__init__(tmp / f"{holder}.err", [*argv, *flags, "--", *cmd])

    def ran(self) -> bool:
        return (self.marks / self.holder).exists()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    with reaped() as started:
        yield started


def lookup(http: httpx.Client, key: str) -> dict[str, object]:
    record: dict[str, object] = http.get(f"/v1/leases/{key}").json()
    return record


def test_three_no_wait_copies_run_the_command_once(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    """Three hosts' cron fires the same line within a second: one runs it, two exit 75."""
    began = time.monotonic()
    for name in ("cron-a", "cron-b", "cron-c"):
        runs.append(Run(tmp_path, service.url, "cron-job", name, "--no-wait", "--hold-after=5"))
    assert time.monotonic() - began < 1.0, "the three must start within a second"
    statuses = {run.holder: run.wait() for run in runs}
    marks = sorted(p.name for p in (tmp_path / "marks").iterdir())
    assert len(marks) == 1, f"the command ran {len(marks)} times: {marks}, {statuses}"
    winner = marks[0]
    assert statuses == {r.holder: 0 if r.holder == winner else HELD for r in runs}
    for run in runs:
        if run.holder != winner:
            assert run.says(f"cron-job is held by {winner}; --no-wait: not running")
            assert not run.says("Traceback")
    record = lookup(http, "cron-job")
    assert record["holder"] == winner and record["held"] is False  # released after the hold


def test_no_wait_and_timeout_while_another_holds(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    taken = http.post("/v1/leases/busy/acquire", json={"holder": "other", "ttl": 120})
    assert taken.status_code == 200

    no_wait = Run(tmp_path, service.url, "busy", "nw", "--no-wait")
    runs.append(no_wait)
    assert no_wait.wait() == HELD
    assert no_wait.says("busy is held by other; --no-wait: not running")

    started = time.monotonic()
    timed = Run(tmp_path, service.url, "busy", "to", "--timeout=1.5s")
    runs.append(timed)
    assert timed.wait() == TIMED_OUT
    took = time.monotonic() - started
    assert took >= 1.5, f"gave up after {took:.2f} s, before its --timeout"
    assert timed.says("not elected within --timeout 1.5 s; giving up")
    assert not no_wait.ran() and not timed.ran()
    record = lookup(http, "busy")
    assert record["holder"] == "other" and record["held"] is True  # nothing of theirs written


def test_timeout_does_not_stop_a_command_that_started(
    service: ServiceProcess, tmp_path: Path, runs: list[Run]
) -> None:
    """Once the command has started, --timeout no longer applies: its status passes through."""
    go = tmp_path / "go"
    started = time.monotonic()
    run = Run(tmp_path, service.url, "slow", "q", "--timeout=8s", status=9, go=go)
    runs.append(run)
    wait_until(run.ran, 8, what="the command started")
    # A time to pass, not an event to wait for: --timeout runs out while the command runs.
    time.sleep(max(0.0, started + 8.5 - time.monotonic()))
    assert run.proc.poll() is None, run.err.read_text()
    go.touch()
    assert run.wait() == 9


def test_hold_after_keeps_the_lease_renewed_then_releases(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    hold = 2 * TTL
    run = Run(tmp_path, service.url, "held", "h", f"--hold-after={hold:g}s", status=3)
    runs.append(run)
    wait_until(run.ran, 60, what="the command ran")
    exited = time.monotonic()  # the command exits right after writing its mark
    token = int((tmp_path / "marks" / "h").read_text())
    seen: list[tuple[float, dict[str, object]]] = []

    def finished() -> bool:
        seen.append((time.monotonic() - exited, lookup(http, "held")))
        return run.proc.poll() is not None

    wait_until(finished, hold + 30, interval=0.2, what="run to exit after its hold")
    assert run.wait() == 3  # the command's status, after the hold
    held = [(at, r) for at, r in seen if r["held"]]
    assert all(r["holder"] == "h" and r["fencing_token"] == token for _, r in held)
    # Held more than a ttl after the command exited: renewed during the hold,
    # not merely left to lapse.
    assert max(at for at, _ in held) > TTL, [(round(at, 1), r["held"]) for at, r in seen]
    assert run.says(f"holding held for {hold:g} s")
    record = lookup(http, "held")
    assert record["held"] is False and record["fencing_token"] == token
    last = http.get("/v1/leases/held/history").json()["terms"][-1]
    assert last["fencing_token"] == token and last["ended_by"] == "released"


def test_a_signal_ends_the_hold_early(
    service: ServiceProcess, http: httpx.Client, tmp_path: Path, runs: list[Run]
) -> None:
    run = Run(tmp_path, service.url, "sig", "s", "--hold-after=10m", status=4)
    runs.append(run)
    wait_until(lambda: run.says("holding sig for 600 s"), 60, what="the hold to begin")
    assert lookup(http, "sig")["held"] is True
    run.proc.terminate()
    assert run.wait() == 4
    assert lookup(http, "sig")["held"] is False


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--timeout", "soon"], "bad duration 'soon'"),
        (["--hold-after", "-5"], "bad duration '-5'"),
        (["--hold-after", "5d"], "bad duration '5d'"),
    ],
)
def test_bad_durations_exit_2(flags: list[str], says: str) -> None:
    argv = [sys.executable, "-m", "leaderelection_service.cli", "run", "--key", "k", *flags]
    out = subprocess.run([*argv, "--", "true"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
