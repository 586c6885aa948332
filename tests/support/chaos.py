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

This module is the run and its command line. Its parts have modules of their
own: ``chaos_stage.py`` the backend and its two service replicas (each
replica reaches a server backend through its own ``TcpProxy``, so one
replica's path can fail alone); ``chaos_electors.py`` the elector processes
(one elector per key in each, so one SIGKILL or SIGSTOP hits every term the
process holds; each behind its own ``TcpProxy``, so its network can be cut
alone); ``chaos_faults.py`` the fault kinds and the injectors that draw them
from one deck; ``chaos_check.py`` the checker.

A run: the stage and the electors start; once every key has a first leader,
``injectors`` threads inject faults until ``duration`` has passed (and on, up
to three times it, until every kind has been injected once). After one last
handoff has had time to finish every elector is stopped, then every replica
is SIGKILLed and started again and every key acquired once more: its token
must be larger than any an elector was granted, or an acknowledged write was
lost (I3). The gaps are held to the bound except in the windows in which a
fault left no healthy candidate.

Rejected: the checker asking the service what happened (it would trust the
code under test).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

if __name__ == "__main__":  # run as a script: make ``support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from support.chaos_check import Bounds, Report, check
from support.chaos_electors import Roster, key_names
from support.chaos_faults import KINDS, Faults
from support.chaos_stage import Stage
from support.elector_proc import Interval
from support.procs import wait_until

__all__ = ["KINDS", "STAGES", "Chaos", "main"]

STAGES = ("file", "postgres", "gcs", "sqlite", "mysql")
SEMAPHORE_KEY = "sem"


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
        semaphore: int = 0,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.duration = duration
        self.count = electors
        self.keys = key_names(keys)
        self.limits = {SEMAPHORE_KEY: semaphore} if semaphore else {}
        """``semaphore`` N > 0: one more key, elected as a semaphore of N slots."""
        self.keys += list(self.limits)
        self.injectors = injectors
        self.term, self.renew, self.retry = term, renew, retry
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.log = log
        self.stage = Stage(backend, workdir, full_disk="full_disk" in kinds)
        self.kinds = tuple(k for k in kinds if self.stage.offers(k))
        self.roster = Roster(
            self.stage, workdir, self.keys, term=term, renew=renew, retry=retry,
            limits=self.limits, log=log,
        )  # fmt: skip
        self.faults = Faults(
            self.stage, self.roster, backend=backend, kinds=self.kinds, rng=self.rng,
            term=term, pause_between=pause_between, log=log,
        )  # fmt: skip
        self.problems: list[str] = []  # the audit's

    def run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log(
            f"chaos on {self.backend}: {self.duration:.0f} s, {len(self.keys)} keys, "
            f"{self.count} electors, {self.injectors} injectors, seed {self.seed}"
            + "".join(f", semaphore {k} of {n}" for k, n in self.limits.items())
        )
        with self._staged():
            self.t0 = time.monotonic()
            for _ in range(self.count):
                self.roster.spawn()
            wait_until(self.roster.every_key_led, 120, 0.2, what="a first leader of every key")
            begin = time.monotonic()  # faults begin once every key is led
            deadline, cap = begin + self.duration, begin + 3 * self.duration
            self.faults.inject(self.injectors, deadline, cap, t0=self.t0)
            # every fault has ended: leave time for one last handoff to finish
            settle = max(deadline, time.monotonic() + self.term + self.retry + 1.0)
            time.sleep(max(0.0, settle - time.monotonic()))
            end = time.monotonic()
            self.roster.stop_all()
            intervals = self.roster.intervals()
            self._audit(intervals)
        return check(
            intervals,
            self.faults.done,
            self.faults.unhealthy + self.roster.no_candidate(self.t0),
            Bounds(self.term, self.retry),
            start=self.t0,
            end=end,
            backend=self.backend,
            electors=self.count,
            extra=self.faults.problems + self.problems,
            torn_writes=self.stage.torn_writes,
            limits=self.limits,
        )

    def _audit(self, intervals: list[Interval]) -> None:
        """I3: after every replica restarts, each key's next token beats every one granted
        (since the key's last emulator write torn by a restart, if any: see the checker)."""
        torn: dict[str, float] = {}
        for t, key in self.stage.torn_writes:
            torn[key] = max(torn.get(key, t), t)
        granted: dict[str, int] = {}
        for i in intervals:
            if i.since > torn.get(i.key, float("-inf")):
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
            self.faults.halt.set()  # injectors still running (Ctrl-C) inject nothing more
            self.roster.close()
            self.stage.close()


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
    p.add_argument(
        "--semaphore", type=int, default=0, metavar="N",
        help="one more key, a semaphore of N slots (e.g. 3 with --electors 7); 0: none",
    )  # fmt: skip
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
            semaphore=args.semaphore,
            log=lambda line: print(line, flush=True),
        ).run()  # fmt: skip
        print(report.table(), flush=True)
        for problem in report.problems:
            print("  " + problem, flush=True)
        for a, b in report.emulator_resets:
            print(f"  emulator reset after a torn write (not I2): {a} then {b}", flush=True)
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
