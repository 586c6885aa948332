"""The chaos harness: electors in their own processes fight over one key while
faults are injected at random; the checker then holds their logs to I1, I2, L1/L2
(one leader, fencing, crash failover, graceful handoff).

Example (from the repository root; any duration)::

    .venv/bin/python tests/support/chaos.py --backend postgres --duration 600
    .venv/bin/python tests/support/chaos.py --backend all --duration 120 --seed 7

    report = Chaos("file", workdir, duration=30).run()   # from a test
    assert report.ok, report.problems

The stage, per backend: ``file`` is one service on a directory; ``postgres`` is
a throwaway PostgreSQL server (restartable, never the shared one), ``mysql`` a
throwaway MariaDB server (SIGKILLed and started again), ``sqlite`` one database
file, and ``gcs`` a fake-gcs-server in filesystem mode, each with two service
replicas.
Every elector (``support/elector_proc.py``, default 5) reaches its replica
through its own ``TcpProxy``, so its network can be cut alone.

Faults, one at a time with a random pause between them, each kind once in a
random order before any repeats:

- ``kill_leader``: SIGKILL the elector that leads; a new one replaces it;
- ``pause_leader``: SIGSTOP it for longer than the term, then SIGCONT;
- ``restart_service``: SIGKILL a service replica and start it again;
- ``restart_backend``: PostgreSQL ``immediate`` restart; MariaDB SIGKILL and start;
  emulator stop/start (SQLite has no server: it is left out);
- ``cut_connection``: the leader's proxy resets every connection for a while.

The harness records when each fault left which electors without a path to a
working backend; gaps are only held to the bound after those windows end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # run as a script: make ``support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from support.chaos_check import Bounds, Fault, Report, check
from support.elector_proc import ElectorProcess, Interval
from support.procs import ServiceProcess, wait_until
from support.tcpproxy import TcpProxy

KEY = "chaos"
KINDS = ("kill_leader", "pause_leader", "restart_service", "restart_backend", "cut_connection")
STAGES = ("file", "postgres", "gcs", "sqlite", "mysql")


class Stage:
    """A backend and the service replicas in front of it."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.replicas: list[ServiceProcess] = []
        self._stack = contextlib.ExitStack()
        self.restart_backend: Callable[[], None] | None = None

    def start(self) -> Stage:
        env: dict[str, str] = {}
        if self.backend == "file":
            (self.workdir / "data").mkdir(exist_ok=True)
            url, count = (self.workdir / "data").as_uri(), 1
        elif self.backend == "postgres":
            from support.sqlservers import PostgresServer

            pg = self._stack.enter_context(PostgresServer.start_new())
            url, count = pg.url, 2
            self.restart_backend = lambda: pg.restart("immediate")
        elif self.backend == "gcs":
            from support.gcs import GcsEmulator

            emu = GcsEmulator(root=self.workdir / "gcs", log_path=self.workdir / "gcs.log")
            self._stack.enter_context(emu)  # starts it
            bucket = emu.create_bucket("chaos")
            url, count, env = f"gs://{bucket}/leases", 2, emu.env()

            def restart() -> None:
                emu.stop()
                emu.start()

            self.restart_backend = restart
        elif self.backend == "sqlite":
            # two replicas on one database file (SQLite's own locking between processes);
            # there is no server to restart
            url, count = f"sqlite:///{self.workdir / 'leases.db'}", 2
        elif self.backend == "mysql":
            from support.sqlservers import MariadbServer

            maria = self._stack.enter_context(MariadbServer.start_new())
            url, count = maria.url, 2

            def crash_and_start() -> None:
                maria.stop()  # SIGKILL: no clean shutdown
                maria.start()

            self.restart_backend = crash_and_start
        else:
            raise ValueError(f"unknown backend {self.backend!r}; use one of {STAGES}")
        for i in range(count):
            svc = ServiceProcess(url, env=env, log_path=self.workdir / f"service-{i}.log")
            self.replicas.append(self._stack.enter_context(svc))
        return self

    def close(self) -> None:
        self._stack.close()


@dataclass
class Candidate:
    elector: ElectorProcess
    proxy: TcpProxy
    replica: int
    down: list[tuple[float, float]] = field(default_factory=list)
    """When this candidate could not lead: paused, cut off, its replica down."""


class Chaos:
    def __init__(
        self,
        backend: str,
        workdir: Path,
        *,
        duration: float = 60.0,
        electors: int = 5,
        term: float = 3.0,
        renew: float = 0.75,
        retry: float = 0.5,
        seed: int | None = None,
        kinds: tuple[str, ...] = KINDS,
        pause_between: tuple[float, float] = (0.5, 3.0),
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.duration = duration
        self.count = electors
        self.term, self.renew, self.retry = term, renew, retry
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.kinds = kinds
        self.pause_between = pause_between
        self.log = log
        self.stage = Stage(backend, workdir)
        self.candidates: list[Candidate] = []
        self.retired: list[Candidate] = []
        self.faults: list[Fault] = []
        self.unhealthy: list[tuple[float, float]] = []
        self._serial = 0
        self._deck: list[str] = []

    # -- electors ------------------------------------------------------------------

    def _spawn(self) -> Candidate:
        self._serial += 1
        replica = self._serial % len(self.stage.replicas)
        proxy = TcpProxy(self.stage.replicas[replica].port).start()
        identity = f"e{self._serial}"
        elector = ElectorProcess(
            f"http://127.0.0.1:{proxy.port}", KEY, identity,
            self.workdir / f"{identity}.jsonl",
            term=self.term, renew=self.renew, retry=self.retry,
        ).start()  # fmt: skip
        c = Candidate(elector, proxy, replica)
        self.candidates.append(c)
        return c

    def leader(self) -> Candidate | None:
        leading = [c for c in self.candidates if c.elector.leading]
        return leading[-1] if leading else None

    def _target(self) -> Candidate:
        return self.leader() or self.rng.choice(self.candidates)

    # -- faults --------------------------------------------------------------------

    def _record(self, kind: str, target: str, start: float) -> None:
        end = time.monotonic()
        self.faults.append(Fault(kind, target, start, end))
        self.log(f"{end - self.t0:7.2f}s {kind} {target} ({end - start:.2f} s)")

    def _kill_leader(self) -> None:
        c, t = self._target(), time.monotonic()
        c.elector.kill()
        c.proxy.close()
        self.candidates.remove(c)
        self.retired.append(c)
        self._spawn()
        self._record("kill_leader", c.elector.identity, t)

    def _pause_leader(self) -> None:
        c, t = self._target(), time.monotonic()
        c.elector.pause()
        time.sleep(self.term + self.rng.uniform(0.5, 2.0))  # longer than a term
        c.elector.resume()
        c.down.append((t, time.monotonic()))
        self._record("pause_leader", c.elector.identity, t)

    def _cut_connection(self) -> None:
        c, t = self._target(), time.monotonic()
        c.proxy.cut()
        time.sleep(self.rng.uniform(0.3, self.term + 2.0))
        c.proxy.restore()
        c.down.append((t, time.monotonic()))
        self._record("cut_connection", c.elector.identity, t)

    def _restart_service(self) -> None:
        lead = self.leader()
        i = (
            lead.replica
            if lead and self.rng.random() < 0.7
            else self.rng.randrange(len(self.stage.replicas))
        )
        t = time.monotonic()
        self.stage.replicas[i].kill()
        self.stage.replicas[i].start()
        for c in self.candidates:
            if c.replica == i:
                c.down.append((t, time.monotonic()))
        if len(self.stage.replicas) == 1:
            self.unhealthy.append((t, time.monotonic()))
        self._record("restart_service", f"replica {i}", t)

    def _restart_backend(self) -> None:
        assert self.stage.restart_backend is not None
        t = time.monotonic()
        self.stage.restart_backend()
        self.unhealthy.append((t, time.monotonic()))
        self._record("restart_backend", self.backend, t)

    def _inject(self) -> None:
        if not self._deck:  # every kind once, in a random order, then again
            self._deck = [
                k for k in self.kinds if k != "restart_backend" or self.stage.restart_backend
            ]
            self.rng.shuffle(self._deck)
        getattr(self, f"_{self._deck.pop()}")()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log(f"chaos on {self.backend}: {self.duration:.0f} s, seed {self.seed}")
        with self._staged():
            self.t0 = time.monotonic()
            for _ in range(self.count):
                self._spawn()
            wait_until(lambda: self.leader() is not None, 60, what="a first leader")
            deadline = time.monotonic() + self.duration  # faults begin once someone leads
            while True:
                pause = self.rng.uniform(*self.pause_between)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)  # the faults' rhythm, not a synchronisation
                self._inject()
            # every fault has ended: leave time for one last handoff to finish
            time.sleep(max(0.0, deadline - time.monotonic()))
            end = time.monotonic()
            for c in self.candidates:
                c.elector.stop()
            intervals = self._intervals()
        return check(
            intervals,
            self.faults,
            self.unhealthy + self._no_candidate(),
            Bounds(self.term, self.retry),
            start=self.t0,
            end=end,
            backend=self.backend,
            electors=self.count,
        )

    @contextlib.contextmanager
    def _staged(self) -> Iterator[None]:
        self.stage.start()
        try:
            yield
        finally:
            for c in self.candidates + self.retired:
                with contextlib.suppress(Exception):
                    if c.elector.proc is not None and c.elector.proc.poll() is None:
                        c.elector.resume()
                        c.elector.proc.kill()
                        c.elector.proc.wait(10)
                c.proxy.close()
            self.stage.close()

    def _intervals(self) -> list[Interval]:
        out: list[Interval] = []
        for c in self.candidates + self.retired:
            out += c.elector.intervals()
        return out

    def _no_candidate(self) -> list[tuple[float, float]]:
        """Windows in which every living candidate was down (none healthy)."""
        everyone = self.candidates + self.retired
        points = sorted({t for c in everyone for w in c.down for t in w})
        out = []
        for a, b in itertools.pairwise(points):
            mid = (a + b) / 2
            alive = [c for c in self.candidates if c.elector.proc is not None]
            if alive and all(any(s <= mid <= e for s, e in c.down) for c in alive):
                out.append((a, b))
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Chaos run: electors, faults, and the I1/I2/L check.")
    p.add_argument("--backend", default="file", choices=[*STAGES, "all"])
    p.add_argument("--duration", type=float, default=120.0, help="seconds per backend")
    p.add_argument("--electors", type=int, default=5)
    p.add_argument("--term", type=float, default=3.0)
    p.add_argument("--renew", type=float, default=0.75)
    p.add_argument("--retry", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="logs (default: a temp dir)")
    p.add_argument("--faults", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    args = p.parse_args(argv)
    import tempfile

    root = args.workdir or Path(tempfile.mkdtemp(prefix="le-chaos-"))
    backends = STAGES if args.backend == "all" else (args.backend,)
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    ok = True
    for backend in backends:
        report = Chaos(
            backend, root / backend, duration=args.duration, electors=args.electors,
            term=args.term, renew=args.renew, retry=args.retry, seed=args.seed, kinds=kinds,
            log=lambda line: print(line, flush=True),
        ).run()  # fmt: skip
        print(report.table(), flush=True)
        for problem in report.problems:
            print("  " + problem, flush=True)
        print(f"logs: {root / backend}", flush=True)
        ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
