"""``LeaderElector`` (or ``AsyncLeaderElector``) per key in its own process, logging JSON lines.

Example::

    python tests/support/elector_proc.py --url http://127.0.0.1:8080 --key job \\
        --term 3 --renew 0.75 --retry 0.5 --identity e1 --log /tmp/e1.jsonl [--kind async]
    python tests/support/elector_proc.py ... --key a --key b --key c   # one elector per key
    # SIGTERM or SIGINT: stop() (steps down, releases), log "stopped", exit 0

    events = read_log(path)                       # from a test or the chaos harness
    terms = leadership_intervals(events, open_until=killed_at)
    assert not overlaps(terms_of_all_processes)

One process may run electors for many keys (``--key`` repeated), one client
each, so one SIGKILL or SIGSTOP hits every term the process holds, as it would
a real multi-tenant worker. Every line has ``event``, ``identity``, ``pid``,
``mono`` (``time.monotonic()``, which on Linux is the system-wide
CLOCK_MONOTONIC, comparable between processes on one host) and ``wall``
(``time.time()``, for people). Events:

- ``started``; ``stopped`` (after ``stop()`` returned, the lease released)
- ``elected``: ``key``, ``token``, ``since`` (monotonic start of the term, as the elector
  recorded it), ``deadline``
- ``ousted``: ``key``, ``token``, ``until`` (the moment the term ended, never later than
  its deadline), ``ended_by`` ("deadline", "lost", "stopped")
- ``renewed``: ``key``, ``token``, ``deadline``: a renew was granted; ``deadline`` is
  sent time + ``min(term, ttl)`` - margin, the sent time read inside the client call, so
  never earlier than the deadline the elector itself takes from that answer
- ``error``: ``key``, ``type``, ``message`` (what ``on_error`` saw)
- ``resumed``: the process did not run for a while (``gap_from`` .. ``gap_to``,
  e.g. SIGSTOP); ``leading`` is the keys ``is_leader`` said first thing after,
  ``leader`` whether there were any

Each line is written and flushed before the callback returns, so a SIGKILL
loses nothing already reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import inspect
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

if __name__ == "__main__":  # run as a script: make ``support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leaderelection import Config
from support.electors import Elector, Electors

GAP = 0.5
"""A sampler iteration later than this (seconds) means the process was paused."""
KEYS_PER_CLIENT = 32
"""Keys whose electors share one client (and its connection pool)."""


@dataclass(frozen=True)
class Interval:
    identity: str
    token: int
    since: float
    until: float
    ended_by: str | None
    key: str = ""


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
    """The terms one process led; an open last term ends at its last deadline, or
    at ``open_until`` if that came first.

    ``open_until`` is when the process is known to have stopped considering
    itself leader (e.g. the monotonic time after its SIGKILL). A process killed
    (or paused, then killed) believes it leads no longer than the last deadline
    it logged: the elected one or a later renewal's. Rejected: ending an open
    term at its kill time alone, which counts a process SIGSTOPped past its
    deadline and killed later as leading all along, an overlap that never was.
    """
    out: list[Interval] = []
    current: dict[str, dict[str, Any]] = {}  # key -> its open "elected" event
    deadline: dict[str, float] = {}  # key -> the open term's latest deadline
    for e in events:
        key = e.get("key", "")
        if e["event"] == "elected":
            assert key not in current, f"elected twice without ousting: {e}"
            current[key] = e
            deadline[key] = e["deadline"]
        elif e["event"] == "renewed":
            if key in current and current[key]["token"] == e["token"]:
                deadline[key] = max(deadline[key], e["deadline"])
        elif e["event"] == "ousted":
            assert key in current, f"ousted without elected: {e}"
            began = current.pop(key)
            assert e["token"] == began["token"], (began, e)
            out.append(
                Interval(e["identity"], e["token"], began["since"], e["until"], e["ended_by"], key)
            )
    for key, began in current.items():
        end = deadline[key] if open_until is None else min(open_until, deadline[key])
        out.append(Interval(began["identity"], began["token"], began["since"], end, None, key))
    return out


def overlaps(intervals: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals of one key and different identities that share any instant."""
    bad = []
    for terms in by_key(intervals).values():
        ordered = sorted(terms, key=lambda i: i.since)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if b.since >= a.until:
                    break
                if a.identity != b.identity:
                    bad.append((a, b))
    return bad


def by_key(intervals: Iterable[Interval]) -> dict[str, list[Interval]]:
    out: dict[str, list[Interval]] = {}
    for i in intervals:
        out.setdefault(i.key, []).append(i)
    return out


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
        key: str | Sequence[str],
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
        limits: dict[str, int] | None = None,
    ) -> None:
        self.identity = identity
        self.log = log
        self.keys = [key] if isinstance(key, str) else list(key)
        self.args = [
            "--url", url, "--identity", identity, "--log", str(log),
            "--term", str(term), "--renew", str(renew), "--retry", str(retry),
        ]  # fmt: skip
        for k in self.keys:
            self.args += ["--key", k]
        if margin is not None:
            self.args += ["--margin", str(margin)]
        if timeout is not None:
            self.args += ["--timeout", str(timeout)]
        if not watch:
            self.args.append("--no-watch")
        self.args += ["--kind", kind]
        for k, n in (limits or {}).items():
            self.args += ["--limit", f"{k}={n}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed_at: float | None = None
        self._events: list[dict[str, Any]] = []
        self._read = 0  # bytes of the log already parsed into _events
        self._leading: set[str] = set()
        self._reading = threading.Lock()  # the harness's fault threads all ask

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
        """Every event so far; the log is read on from where the last call stopped
        (a long chaos run asks often, and its logs grow to megabytes)."""
        with self._reading:
            return self._read_on()

    def _read_on(self) -> list[dict[str, Any]]:
        if self.log.exists():
            with open(self.log, "rb") as f:
                f.seek(self._read)
                chunk = f.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            self._read += len(whole)
            for line in whole.splitlines():
                if line.strip():
                    e = json.loads(line)
                    self._events.append(e)
                    if e["event"] == "elected":
                        self._leading.add(e.get("key", ""))
                    elif e["event"] == "ousted":
                        self._leading.discard(e.get("key", ""))
        return list(self._events)

    @property
    def leading_keys(self) -> set[str]:
        """Keys whose last term in the log is open (it may have died since)."""
        with self._reading:
            self._read_on()
            return set(self._leading)

    @property
    def leading(self) -> bool:
        """Its log's last term of some key is open (it may have died since)."""
        return bool(self.leading_keys)

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
    p.add_argument("--key", required=True, action="append", help="repeat for one elector per key")
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
        "--limit", action="append", default=[], metavar="KEY=N",
        help="elect on KEY as a semaphore of N slots (leading: holding one)",
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
    # ``kill -USR1 <pid>``: every thread's stack to stderr (the .stderr file), to
    # see where a process that does not stop is waiting
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    electors = Electors(args.kind)
    # One client per KEYS_PER_CLIENT keys: each key holds a watch stream and at
    # most one request, well inside httpx's pool of 100 connections. Rejected:
    # one client per key, since each builds an SSL context (the CA bundle read
    # and parsed), and under load 48 of them kept a new process from electing
    # for tens of seconds.
    clients = [
        logging_renewals(electors.client(args.url, token=args.token), config, log)
        for _ in range(0, len(args.key), KEYS_PER_CLIENT)
    ]
    mine = {
        key: elector_for(electors, clients[i // KEYS_PER_CLIENT], key, args, log)
        for i, key in enumerate(args.key)
    }

    def sample() -> None:
        last = time.monotonic()
        while not done.is_set():
            now = time.monotonic()
            if now - last > GAP:
                leading = sorted(k for k, e in mine.items() if e.is_leader)
                log.write(
                    "resumed", gap_from=last, gap_to=now, leader=bool(leading), leading=leading
                )
            last = now
            done.wait(0.02)

    log.write("started", keys=args.key, config=dataclasses.asdict(config))
    threading.Thread(target=sample, daemon=True).start()
    for elector in mine.values():
        elector.start()
    done.wait()
    # every key steps down at once: one by one, a process with dozens of keys
    # would hold the last ones for many round trips after SIGTERM
    stopping = [threading.Thread(target=e.stop) for e in mine.values()]
    for t in stopping:
        t.start()
    for t in stopping:
        t.join()
    electors.close()
    log.write("stopped")
    log.file.close()
    return 0


def logging_renewals(client: Any, config: Config, log: Log) -> Any:
    """``client`` with each granted renew logged (``renewed``) before the elector sees it.

    The elector calls ``client.renew`` by name, so an attribute on the instance
    takes its place. The deadline logged is never earlier than the elector's:
    the elector reads its send time before this call does.
    """
    original = client.renew

    def logged(key: str, sent: float, lease: Any) -> Any:
        until = sent + min(config.term, lease.ttl) - config.margin
        log.write("renewed", key=key, token=lease.fencing_token, deadline=until)
        return lease

    if inspect.iscoroutinefunction(original):

        async def renew_async(key: str, *args: Any, **kw: Any) -> Any:
            sent = time.monotonic()
            return logged(key, sent, await original(key, *args, **kw))

        client.renew = renew_async
    else:

        def renew(key: str, *args: Any, **kw: Any) -> Any:
            sent = time.monotonic()
            return logged(key, sent, original(key, *args, **kw))

        client.renew = renew
    return client


def elector_for(
    electors: Electors, client: Any, key: str, args: argparse.Namespace, log: Log
) -> Elector:
    config = Config(args.term, args.renew, args.retry, margin=args.margin, timeout=args.timeout)
    limits = dict(item.split("=", 1) for item in args.limit)
    elector = electors.new(
        client, key, identity=args.identity, config=config, watch=args.watch,
        limit=int(limits.get(key, 1)),
        on_elected=lambda me, cancel: elected(),
        on_ousting=lambda me, cancel: ousting(),
        on_error=lambda me, exc, cancel: error(exc),
    )  # fmt: skip

    # Callbacks run under the elector's transition lock, so ``leadership`` is the
    # term that just began or ended.
    def elected() -> None:
        term = elector.leadership
        assert term is not None
        log.write(
            "elected", key=key, token=term.lease.fencing_token, since=term.since,
            deadline=term.until,
        )  # fmt: skip

    def ousting() -> None:
        term = elector.leadership
        assert term is not None
        log.write(
            "ousted", key=key, token=term.lease.fencing_token, until=term.until,
            ended_by=term.ended_by,
        )  # fmt: skip

    def error(exc: Exception) -> None:
        log.write("error", key=key, type=type(exc).__name__, message=str(exc)[:300])

    return elector


if __name__ == "__main__":
    sys.exit(main())
