"""The chaos harness: electors in their own processes fight over many keys while
faults, several at once, are injected at random; the checker then holds their
logs to one leader (I1), fencing (I2) and crash failover and graceful handoff
(L1/L2), key by key.

Example (from the repository root; any duration)::

    .venv/bin/python tests/support/chaos.py --backend postgres --duration 600
    .venv/bin/python tests/support/chaos.py --backend file,postgres,gcs --duration 300 \\
        --keys 48 --electors 4 --injectors 3 --term 2 --renew 0.5 --retry 0.25

    report = Chaos("file", workdir, duration=30, keys=8).run()   # from a test
    assert report.ok, report.problems

The stage, per backend: ``file`` is two services on one directory (on a small
tmpfs of its own when ``full_disk`` is among the faults); ``postgres`` is a
throwaway PostgreSQL server (restartable, never the shared one), ``mysql`` a
throwaway MariaDB server (SIGKILLed and started again), ``sqlite`` one database
file, and ``gcs`` a fake-gcs-server in filesystem mode, each with two service
replicas. Each replica of a server backend reaches it through its own
``TcpProxy``, so one replica's path to the backend can fail alone.

Every elector process (``support/elector_proc.py``) runs one elector per key,
for every key of the run, so one SIGKILL or SIGSTOP hits every term the
process holds; it reaches its replica through its own ``TcpProxy``, so its
network can be cut alone. Processes alternate between the sync and the async
elector.

``injectors`` threads inject faults at once, each with a random pause between
its faults, drawing from one deck: each kind once in a random order before
any repeats (a run goes on past its duration, up to three times it, until
every kind has been injected once); a fault
takes what it acts on (an elector, a replica, the backend) for itself, so two
faults overlap in time but never fight over one target:

- ``kill_leader``: SIGKILL the elector process leading most keys; a new one replaces it;
- ``stop_leader``: SIGTERM it (it steps down and releases: a graceful handoff); a new one
  replaces it;
- ``pause_leader``: SIGSTOP it for longer than the term, then SIGCONT;
- ``cut_connection``: its proxy resets every connection for a while;
- ``blackhole``: its proxy holds every connection open and forwards nothing, so its
  calls hang until their timeouts, then delivers what waited (late) on restore;
- ``restart_service``: SIGKILL a service replica and start it again;
- ``pause_service``: SIGSTOP a service replica for longer than the term, then SIGCONT:
  what it answers after must agree with the backend (a stale grant would show as an
  overlap or a repeated token);
- ``backend_blackhole``: a replica's proxy to the backend holds (PostgreSQL, MariaDB, GCS);
- ``restart_backend``: PostgreSQL ``immediate`` restart; MariaDB SIGKILL and start;
  emulator stop/start (SQLite and the file backend have no server: left out);
- ``full_disk``: fill the file backend's tmpfs until ENOSPC, probe that ``/readyz``
  and a write to a new key answer 503, free it, probe that they recover.

The harness records when each fault left which electors without a path to a
working backend; gaps are only held to the bound after those windows end. At
the end every replica is SIGKILLed and started again and every key acquired
once more: its token must be larger than any an elector was granted, or an
acknowledged write was lost (I3).

Rejected: one injector at a time (faults in production do not queue), and the
checker asking the service what happened (it would trust the code under test).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # run as a script: make ``support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from support.chaos_check import Bounds, Fault, Report, check
from support.chaos_stage import Stage
from support.elector_proc import ElectorProcess, Interval
from support.procs import wait_until
from support.tcpproxy import TcpProxy

KINDS = (
    "kill_leader", "stop_leader", "pause_leader", "cut_connection", "blackhole",
    "restart_service", "pause_service", "backend_blackhole", "restart_backend", "full_disk",
)  # fmt: skip
STAGES = ("file", "postgres", "gcs", "sqlite", "mysql")
ELECTOR_FAULTS = {"kill_leader", "stop_leader", "pause_leader", "cut_connection", "blackhole"}


def key_names(count: int) -> list[str]:
    return ["chaos"] if count == 1 else [f"k{i:03d}" for i in range(count)]


@dataclass
class Candidate:
    elector: ElectorProcess
    proxy: TcpProxy
    replica: int
    down: list[tuple[float, float]] = field(default_factory=list)
    """When this candidate could not lead: paused, cut off, its replica down."""
    born: float = field(default_factory=time.monotonic)
    gone: float = float("inf")
    """From SIGKILL or SIGTERM on, it is no candidate."""

    def started(self) -> float:
        """When its process began electing (it imports for seconds under load)."""
        return next(
            (e["mono"] for e in self.elector.events() if e["event"] == "started"), float("inf")
        )

    def healthy(self, t: float, started: float) -> bool:
        """Running its electors at ``t`` (started, not yet ended) and not down."""
        if not max(self.born, started) <= t < self.gone:
            return False
        return not any(s <= t <= e for s, e in self.down)


class Chaos:
    def __init__(
        self,
        backend: str,
        workdir: Path,
        *,
        duration: float = 60.0,
        electors: int = 5,
        keys: int = 1,
        injectors: int = 1,
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
        self.keys = key_names(keys)
        self.injectors = injectors
        self.term, self.renew, self.retry = term, renew, retry
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.pause_between = pause_between
        self.log = log
        self.stage = Stage(backend, workdir, full_disk="full_disk" in kinds)
        self.kinds = tuple(k for k in kinds if self.stage.offers(k))
        self.candidates: list[Candidate] = []
        self.retired: list[Candidate] = []
        self.faults: list[Fault] = []
        self.unhealthy: list[tuple[float, float]] = []
        self.problems: list[str] = []
        self._serial = 0
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._deck: list[str] = []
        self._halt = threading.Event()  # the run is ending early (an interrupt, an error)

    # -- electors ------------------------------------------------------------------

    def _spawn(self) -> Candidate:
        with self._lock:
            self._serial += 1
            serial = self._serial
        replica = serial % len(self.stage.replicas)
        proxy = TcpProxy(self.stage.replicas[replica].port).start()
        identity = f"e{serial}"
        elector = ElectorProcess(
            f"http://127.0.0.1:{proxy.port}", self.keys, identity,
            self.workdir / f"{identity}.jsonl",
            term=self.term, renew=self.renew, retry=self.retry,
            kind="async" if serial % 2 else "sync",
        ).start()  # fmt: skip
        c = Candidate(elector, proxy, replica)
        with self._lock:
            self.candidates.append(c)
        return c

    def _take_candidate(self) -> Candidate | None:
        """A free candidate, most often the one leading most keys; taken until released."""
        with self._lock:
            free = [c for c in self.candidates if c.elector.identity not in self._busy]
            if not free:
                return None
            if self.rng.random() < 0.8:
                c = max(free, key=lambda c: len(c.elector.leading_keys))
            else:
                c = self.rng.choice(free)
            self._busy.add(c.elector.identity)
            return c

    def _take(self, name: str) -> bool:
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)
            return True

    def _release(self, name: str) -> None:
        with self._lock:
            self._busy.discard(name)

    # -- faults --------------------------------------------------------------------

    def _record(self, kind: str, target: str, start: float) -> None:
        end = time.monotonic()
        with self._lock:
            self.faults.append(Fault(kind, target, start, end))
        self.log(f"{end - self.t0:7.2f}s {kind} {target} ({end - start:.2f} s)")

    def _stop(self, c: Candidate) -> None:
        """SIGTERM; one that does not stop within a minute is SIGKILLed, its terms
        ending then (so the checker still holds them to I1)."""
        import subprocess

        try:
            c.elector.stop(timeout=60)
        except subprocess.TimeoutExpired:
            c.elector.killed_at = time.monotonic()
            self.log(f"{c.elector.identity} did not stop within 60 s: killed")

    def _longer_than_a_term(self) -> float:
        return self.term + self.rng.uniform(0.5, 2.0)

    def _elector_fault(self, kind: str) -> bool:
        c = self._take_candidate()
        if c is None:
            return False
        t = time.monotonic()
        try:
            if kind in ("kill_leader", "stop_leader"):
                c.gone = t
                if kind == "kill_leader":
                    c.elector.kill()
                else:
                    self._stop(c)  # steps down and releases every key
                c.proxy.close()
                with self._lock:
                    self.candidates.remove(c)
                    self.retired.append(c)
                self._spawn()
            elif kind == "pause_leader":
                c.elector.pause()
                time.sleep(self._longer_than_a_term())  # the fault's length
                c.elector.resume()
                c.down.append((t, time.monotonic()))
            else:
                c.proxy.cut() if kind == "cut_connection" else c.proxy.hold()
                time.sleep(self.rng.uniform(0.3, self.term + 2.0))
                c.proxy.restore()
                c.down.append((t, time.monotonic()))
        finally:
            self._release(c.elector.identity)
        self._record(kind, c.elector.identity, t)
        return True

    def _replica_fault(self, kind: str) -> bool:
        order = list(range(len(self.stage.replicas)))
        self.rng.shuffle(order)
        i = next((i for i in order if self._take(f"replica {i}")), None)
        if i is None:
            return False
        t = time.monotonic()
        everyone = False  # whether the fault can stall the other replicas too
        try:
            replica = self.stage.replicas[i]
            if kind == "restart_service":
                replica.kill()
                replica.start()
                everyone = len(self.stage.replicas) == 1
            elif kind == "pause_service":
                replica.pause()
                time.sleep(self._longer_than_a_term())
                replica.resume()
                # a replica stopped mid-write keeps its flock (file), its row locks
                # (SQL) or the SQLite write lock: the other replicas wait on it
                everyone = self.backend != "gcs"
            else:  # backend_blackhole
                proxy = self.stage.backend_proxies[i]
                proxy.hold()
                time.sleep(self._longer_than_a_term())
                proxy.restore()
                everyone = self.backend != "gcs"  # its open transaction holds row locks
        finally:
            self._release(f"replica {i}")
        window = (t, time.monotonic())
        if everyone:
            self.unhealthy.append(window)
        for c in list(self.candidates):
            if c.replica == i:
                c.down.append(window)
        self._record(kind, f"replica {i}", t)
        return True

    def _backend_fault(self, kind: str) -> bool:
        # the disk's probes ask replica 0: it must not be restarted or paused meanwhile
        also = "replica 0" if kind == "full_disk" else None
        if not self._take("backend"):
            return False
        if also and not self._take(also):
            self._release("backend")
            return False
        t = time.monotonic()
        try:
            if kind == "restart_backend":
                assert self.stage.restart_backend is not None
                self.stage.restart_backend()
            else:
                self._full_disk()
        finally:
            self._release("backend")
            if also:
                self._release(also)
        self.unhealthy.append((t, time.monotonic()))
        self._record(kind, self.backend, t)
        return True

    def _full_disk(self) -> None:
        """Fill the disk, probe that writes are refused, free it, probe recovery."""
        from support.tmpfs import fill, free

        assert self.stage.disk is not None
        url = self.stage.replicas[0].url
        probe = f"probe-{self.rng.randrange(1 << 30)}"
        fill(self.stage.disk)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                self._expect(http, 503, "/readyz on a full disk")
                resp = http.post(f"/v1/leases/{probe}/acquire", json={"holder": "p", "ttl": 2})
                if resp.status_code != 503:
                    self.problems.append(
                        f"full disk: acquire of a new key answered {resp.status_code}, not 503"
                    )
                time.sleep(self.rng.uniform(0.5, self.term))  # the fault's length
        finally:
            free(self.stage.disk)
        with httpx.Client(base_url=url, timeout=10) as http:
            self._expect(http, 200, "/readyz after space returned")
            resp = http.post(f"/v1/leases/{probe}/acquire", json={"holder": "p", "ttl": 2})
            if resp.status_code != 200:
                self.problems.append(f"full disk freed: acquire answered {resp.status_code}")

    def _expect(self, http: httpx.Client, status: int, what: str) -> None:
        def answers() -> bool:
            try:
                return http.get("/readyz").status_code == status
            except httpx.TransportError:
                return False

        try:
            wait_until(answers, 10, 0.1, what)
        except TimeoutError as exc:
            self.problems.append(str(exc))

    def _inject(self, kind: str) -> bool:
        if kind in ELECTOR_FAULTS:
            return self._elector_fault(kind)
        if kind in ("restart_service", "pause_service", "backend_blackhole"):
            return self._replica_fault(kind)
        return self._backend_fault(kind)

    def _draw(self) -> str:
        with self._lock:
            if not self._deck:  # every kind once, in a random order, then again
                self._deck = list(self.kinds)
                self.rng.shuffle(self._deck)
            return self._deck.pop()

    def _put_back(self, kind: str) -> None:
        with self._lock:
            self._deck.insert(0, kind)  # its target is taken by another fault: later

    def _missing(self) -> set[str]:
        with self._lock:
            return set(self.kinds) - {f.kind for f in self.faults}

    def _injector(self, rng: random.Random, deadline: float, cap: float) -> None:
        """Until ``deadline``, and on to ``cap`` while some kind was never injected."""
        while True:
            pause = rng.uniform(*self.pause_between)
            now = time.monotonic()
            if now + pause >= cap or (now + pause >= deadline and not self._missing()):
                return
            if self._halt.wait(pause):  # the faults' rhythm, not a synchronisation
                return
            kind = self._draw()
            try:
                if not self._inject(kind):
                    self._put_back(kind)
            except Exception as exc:  # the harness's own failure: said, never silent
                self.problems.append(f"harness: {kind} failed: {exc!r}")
                self.log(f"{kind} failed: {exc!r}")

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log(
            f"chaos on {self.backend}: {self.duration:.0f} s, {len(self.keys)} keys, "
            f"{self.count} electors, {self.injectors} injectors, seed {self.seed}"
        )
        with self._staged():
            self.t0 = time.monotonic()
            for _ in range(self.count):
                self._spawn()
            wait_until(self._every_key_led, 120, 0.2, what="a first leader of every key")
            begin = time.monotonic()  # faults begin once every key is led
            deadline, cap = begin + self.duration, begin + 3 * self.duration
            threads = [
                threading.Thread(
                    target=self._injector, args=(random.Random(self.rng.random()), deadline, cap)
                )
                for _ in range(self.injectors)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # every fault has ended: leave time for one last handoff to finish
            settle = max(deadline, time.monotonic() + self.term + self.retry + 1.0)
            time.sleep(max(0.0, settle - time.monotonic()))
            end = time.monotonic()
            stopping = [threading.Thread(target=self._stop, args=(c,)) for c in self.candidates]
            for t in stopping:
                t.start()
            for t in stopping:
                t.join()
            intervals = self._intervals()
            self._audit(intervals)
        return check(
            intervals,
            self.faults,
            self.unhealthy + self._no_candidate(),
            Bounds(self.term, self.retry),
            start=self.t0,
            end=end,
            backend=self.backend,
            electors=self.count,
            extra=self.problems,
        )

    def _every_key_led(self) -> bool:
        led = set().union(*(c.elector.leading_keys for c in self.candidates))
        return led >= set(self.keys)

    def _audit(self, intervals: list[Interval]) -> None:
        """I3: after every replica restarts, each key's next token beats every one granted."""
        granted: dict[str, int] = {}
        for i in intervals:
            granted[i.key] = max(granted.get(i.key, 0), i.token)
        for replica in self.stage.replicas:
            replica.kill()
            replica.start()
        with httpx.Client(base_url=self.stage.replicas[0].url, timeout=10) as http:
            for key, token in sorted(granted.items()):
                answers: list[str] = []

                def acquired(key: str = key, answers: list[str] = answers) -> bool:
                    try:
                        body = {"holder": "audit", "ttl": 2}  # the least gs:// takes
                        resp = http.post(f"/v1/leases/{key}/acquire", json=body)
                    except httpx.TransportError as exc:
                        answers.append(repr(exc))
                        return False
                    answers.append(f"{resp.status_code} {resp.text[:200]}")
                    return resp.status_code == 200

                try:  # a killed elector's lease runs out within a term
                    wait_until(acquired, self.term + 20, 0.2, f"the audit's acquire of {key}")
                except TimeoutError as exc:
                    self.problems.append(f"{exc}; last answer: {answers[-1:]}")
                    continue
                now = int(http.get(f"/v1/leases/{key}").json()["fencing_token"])
                if now <= token:
                    self.problems.append(
                        f"I3 {key}: token {now} after a restart, but {token} was granted before"
                    )

    @contextlib.contextmanager
    def _staged(self) -> Iterator[None]:
        self.stage.start()
        try:
            yield
        finally:
            self._halt.set()  # injectors still running (Ctrl-C) inject nothing more
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
        """Windows in which no candidate was healthy (all dead, starting or down)."""
        everyone = self.candidates + self.retired
        started = [c.started() for c in everyone]
        points = {self.t0, *started}
        for c in everyone:
            points.update([c.born, c.gone])
            points.update(t for w in c.down for t in w)
        ordered = sorted(t for t in points if t != float("inf"))
        out = []
        for a, b in itertools.pairwise(ordered):
            mid = (a + b) / 2
            if not any(c.healthy(mid, s) for c, s in zip(everyone, started, strict=True)):
                out.append((a, b))
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Chaos run: electors, faults, and the I1/I2/L check.")
    p.add_argument("--backend", default="file", help=f"comma list of {', '.join(STAGES)}, or all")
    p.add_argument("--duration", type=float, default=120.0, help="seconds per backend")
    p.add_argument("--electors", type=int, default=5, help="elector processes")
    p.add_argument("--keys", type=int, default=1, help="keys; every process elects on each")
    p.add_argument("--injectors", type=int, default=1, help="faults injected at once")
    p.add_argument("--term", type=float, default=3.0)
    p.add_argument("--renew", type=float, default=0.75)
    p.add_argument("--retry", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--pause", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"))
    p.add_argument("--workdir", type=Path, default=None, help="logs (default: a temp dir)")
    p.add_argument("--faults", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    p.add_argument(
        "--parallel", action="store_true",
        help="run the backends at once, each in a process of its own (this script again)",
    )  # fmt: skip
    args = p.parse_args(argv)
    import tempfile

    root = args.workdir or Path(tempfile.mkdtemp(prefix="le-chaos-"))
    backends = STAGES if args.backend == "all" else tuple(args.backend.split(","))
    if set(backends) - set(STAGES):
        p.error(f"unknown backends: {', '.join(sorted(set(backends) - set(STAGES)))}")
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if args.parallel and len(backends) > 1:
        return in_parallel(argv if argv is not None else sys.argv[1:], backends, root)
    ok = True
    tables = []
    for backend in backends:
        report = Chaos(
            backend, root / backend, duration=args.duration, electors=args.electors,
            keys=args.keys, injectors=args.injectors, term=args.term, renew=args.renew,
            retry=args.retry, seed=args.seed, kinds=kinds, pause_between=tuple(args.pause),
            log=lambda line: print(line, flush=True),
        ).run()  # fmt: skip
        print(report.table(), flush=True)
        for problem in report.problems:
            print("  " + problem, flush=True)
        print(f"logs: {root / backend}", flush=True)
        tables.append(report.kind_table(header=not tables))
        (root / backend / "table.md").write_text(report.kind_table(header=False) + "\n")
        ok = ok and report.ok
    print("\n".join(tables))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


def in_parallel(argv: list[str], backends: tuple[str, ...], root: Path) -> int:
    """This script once per backend, at once; their tables joined (each prints its own log)."""
    import subprocess

    rest: list[str] = []
    skip = False
    for a in argv:  # every argument but --backend, --parallel and --workdir
        if skip:
            skip = False
        elif a in ("--backend", "--workdir"):
            skip = True
        elif a != "--parallel" and not a.startswith(("--backend=", "--workdir=")):
            rest.append(a)
    root.mkdir(parents=True, exist_ok=True)
    runs = []
    for b in backends:
        with open(root / f"{b}.out", "w") as out:
            cmd = [sys.executable, __file__, *rest, "--backend", b, "--workdir", str(root)]
            runs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
    codes = [r.wait() for r in runs]
    print("| backend | fault kind | terms | handoffs | faults | overlaps | token errors | "
          "longest gap (s) |")  # fmt: skip
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for b, code in zip(backends, codes, strict=True):
        table = root / b / "table.md"
        print(table.read_text().rstrip() if table.exists() else f"| {b} | (run failed) |")
        print(f"{b}: exit {code}, output in {root / (b + '.out')}", file=sys.stderr)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if not any(codes) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
