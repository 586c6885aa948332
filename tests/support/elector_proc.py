"""One ``LeaderElector`` (or ``AsyncLeaderElector``) in its own process, logging as JSON lines.

Example::

    python tests/support/elector_proc.py --url http://127.0.0.1:8080 --key job \\
        --term 3 --renew 0.75 --retry 0.5 --identity e1 --log /tmp/e1.jsonl [--kind async]
    # SIGTERM or SIGINT: stop() (steps down, releases), log "stopped", exit 0

    events = read_log(path)                       # from a test or the chaos harness
    terms = leadership_intervals(events, open_until=killed_at)
    assert not overlaps(terms_of_all_processes)

Every line has ``event``, ``identity``, ``pid``, ``mono`` (``time.monotonic()``,
which on Linux is the system-wide CLOCK_MONOTONIC, comparable between
processes on one host) and ``wall`` (``time.time()``, for people). Events:

- ``started``; ``stopped`` (after ``stop()`` returned, the lease released)
- ``elected``: ``token``, ``since`` (monotonic start of the term, as the elector
  recorded it), ``deadline``
- ``ousted``: ``token``, ``until`` (the moment the term ended, never later than
  its deadline), ``ended_by`` ("deadline", "lost", "stopped")
- ``error``: ``type``, ``message`` (what ``on_error`` saw)
- ``resumed``: the process did not run for a while (``gap_from`` .. ``gap_to``,
  e.g. SIGSTOP); ``leader`` is what ``is_leader`` said first thing after

Each line is written and flushed before the callback returns, so a SIGKILL
loses nothing already reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from leaderelection import Config

GAP = 0.5
"""A sampler iteration later than this (seconds) means the process was paused."""


@dataclass(frozen=True)
class Interval:
    identity: str
    token: int
    since: float
    until: float
    ended_by: str | None


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def leadership_intervals(
    events: Iterable[dict[str, Any]], open_until: float | None = None
) -> list[Interval]:
    """The terms one process led; an open last term ends at ``open_until``.

    ``open_until`` is when the process is known to have stopped considering
    itself leader (e.g. the monotonic time after its SIGKILL): the open term
    ends then. Without it, the term's first deadline is used, a lower bound
    (renewals move the deadline and are not logged).
    """
    out: list[Interval] = []
    current: dict[str, Any] | None = None
    for e in events:
        if e["event"] == "elected":
            assert current is None, f"elected twice without ousting: {e}"
            current = e
        elif e["event"] == "ousted":
            assert current is not None, f"ousted without elected: {e}"
            assert e["token"] == current["token"], (current, e)
            out.append(
                Interval(e["identity"], e["token"], current["since"], e["until"], e["ended_by"])
            )
            current = None
    if current is not None:
        end = current["deadline"] if open_until is None else open_until
        out.append(Interval(current["identity"], current["token"], current["since"], end, None))
    return out


def overlaps(intervals: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals of different identities that share any instant."""
    ordered = sorted(intervals, key=lambda i: i.since)
    bad = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.since >= a.until:
                break
            if a.identity != b.identity:
                bad.append((a, b))
    return bad


class ElectorProcess:
    """This script in a child process, for tests and the chaos harness.

    Example::

        e = ElectorProcess(svc.url, "job", "e1", tmp_path / "e1.jsonl", term=3).start()
        wait_until(lambda: e.leading, 20)
        e.kill()                      # SIGKILL; e.pause() / e.resume(): SIGSTOP / SIGCONT
    """

    def __init__(
        self,
        url: str,
        key: str,
        identity: str,
        log: Path,
        *,
        term: float = 3.0,
        renew: float = 0.75,
        retry: float = 0.5,
        margin: float | None = None,
        timeout: float | None = None,
        watch: bool = True,
        kind: str = "sync",
    ) -> None:
        self.identity = identity
        self.log = log
        self.args = [
            "--url", url, "--key", key, "--identity", identity, "--log", str(log),
            "--term", str(term), "--renew", str(renew), "--retry", str(retry),
        ]  # fmt: skip
        if margin is not None:
            self.args += ["--margin", str(margin)]
        if timeout is not None:
            self.args += ["--timeout", str(timeout)]
        if not watch:
            self.args.append("--no-watch")
        self.args += ["--kind", kind]
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed_at: float | None = None

    def start(self) -> ElectorProcess:
        with open(self.log.with_suffix(".stderr"), "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), *self.args],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        return read_log(self.log)

    @property
    def leading(self) -> bool:
        """Its log's last term is open (it may have died since)."""
        state = False
        for e in self.events():
            if e["event"] in ("elected", "ousted"):
                state = e["event"] == "elected"
        return state

    def intervals(self) -> list[Interval]:
        return leadership_intervals(self.events(), open_until=self.killed_at)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=15)
        self.killed_at = time.monotonic()

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (the runner stops its elector, which releases) and wait."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
            raise


class Log:
    def __init__(self, path: Path, identity: str) -> None:
        self.identity = identity
        self.lock = threading.Lock()
        self.file: TextIO = open(path, "a", buffering=1)  # noqa: SIM115 - closed in main

    def write(self, event: str, **fields: Any) -> None:
        line = {
            "event": event,
            "identity": self.identity,
            "pid": os.getpid(),
            "mono": time.monotonic(),
            "wall": time.time(),
            **fields,
        }
        with self.lock:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run one LeaderElector and log its leadership.")
    p.add_argument("--url", required=True, help="the service's base URL")
    p.add_argument("--key", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--log", required=True, type=Path, help="JSON-lines file to append to")
    p.add_argument("--term", type=float, default=3.0)
    p.add_argument("--renew", type=float, default=0.75)
    p.add_argument("--retry", type=float, default=0.5)
    p.add_argument("--margin", type=float, default=None)
    p.add_argument("--timeout", type=float, default=None, help="HTTP timeout per attempt")
    p.add_argument("--token", default=os.environ.get("LEADERELECTION_TOKEN"))
    p.add_argument(
        "--no-watch", dest="watch", action="store_false",
        help="followers poll every retry instead of following the watch stream",
    )  # fmt: skip
    p.add_argument(
        "--kind", choices=("sync", "async"), default="sync",
        help="LeaderElector in threads, or AsyncLeaderElector in an event loop",
    )  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = Config(args.term, args.renew, args.retry, margin=args.margin, timeout=args.timeout)
    log = Log(args.log, args.identity)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
    from support.electors import Electors

    electors = Electors(args.kind)
    client = electors.client(args.url, token=args.token)
    elector = electors.new(
        client, args.key, identity=args.identity, config=config, watch=args.watch,
        on_elected=lambda me, cancel: elected(me, cancel),
        on_ousting=lambda me, cancel: ousting(me, cancel),
        on_error=lambda me, exc, cancel: error(me, exc, cancel),
    )  # fmt: skip

    # Callbacks run under the elector's transition lock, so ``leadership`` is the
    # term that just began or ended.
    def elected(identity: str, cancel: object) -> None:
        term = elector.leadership
        assert term is not None
        log.write("elected", token=term.lease.fencing_token, since=term.since, deadline=term.until)

    def ousting(identity: str, cancel: object) -> None:
        term = elector.leadership
        assert term is not None
        log.write(
            "ousted", token=term.lease.fencing_token, until=term.until, ended_by=term.ended_by
        )

    def error(identity: str, exc: Exception, cancel: object) -> None:
        log.write("error", type=type(exc).__name__, message=str(exc)[:300])

    def sample() -> None:
        last = time.monotonic()
        while not done.is_set():
            now = time.monotonic()
            if now - last > GAP:
                log.write("resumed", gap_from=last, gap_to=now, leader=elector.is_leader)
            last = now
            done.wait(0.02)

    log.write("started", key=args.key, config=dataclasses.asdict(config))
    threading.Thread(target=sample, daemon=True).start()
    elector.start()
    done.wait()
    elector.stop()
    electors.close()
    log.write("stopped")
    log.file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
