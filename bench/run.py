"""Benchmark the lease service against its ceilings and etcd, in one run.

Example::

    .venv/bin/python bench/run.py                      # everything (about 25 minutes)
    .venv/bin/python bench/run.py --quick              # a smoke run, about a minute
    .venv/bin/python bench/run.py --sections throughput,ceilings --backends file
    .venv/bin/python bench/run.py --sections throughput,ceilings,etcd \\
        --backends postgresql,memory --conns 64 --keys 10000 --duration 5 --rounds 5

Starts what it needs on loopback (the service on each backend, the bare ASGI
and no-op FastAPI ceilings, etcd), keeps them all up and loads them in turn
with wrk, in ``--rounds`` interleaved rounds (see ``bench/rounds.py``),
prints one table and the targets met or missed (on the medians), and
writes everything as JSON to ``bench/results/``. A section that cannot run
(wrk, etcd or a backend missing) prints ``not available: <why>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs, report, rounds, targets, throughput
from bench.etcd_peer import Etcd, etcd_path
from bench.wrk import wrk_path

SECTIONS = ("throughput", "ceilings", "etcd", "failover", "scale")
BACKENDS = ("file", "postgresql", "gcs", "memory")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        out = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in out if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
        return out

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", type=_names(SECTIONS), default=list(SECTIONS))
    p.add_argument("--backends", type=_names(BACKENDS), default=list(BACKENDS))
    p.add_argument("--conns", type=_ints, default=[1, 16, 64], help="wrk connections")
    p.add_argument("--keys", type=_ints, default=[1, 10_000], help="key spaces (1: hot key)")
    p.add_argument(
        "--gcs-keys", type=int, default=1000, help="cap on distinct keys for the GCS emulator"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="interleaved rounds of throughput/ceilings/etcd; ratios get a median and spread",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="uvicorn workers")
    p.add_argument("--failover-trials", type=int, default=20)
    p.add_argument(
        "--failover-backend", choices=BACKENDS, help="default: postgresql when available, else file"
    )
    p.add_argument("--scale-leases", type=int, default=10_000)
    p.add_argument("--scale-ttl", type=float, default=15.0)
    p.add_argument("--scale-duration", type=float, default=60.0)
    p.add_argument(
        "--scale-backend", choices=BACKENDS, help="default: postgresql when available, else file"
    )
    p.add_argument("--pg-dsn", default=os.environ.get("BENCH_PG_DSN", DEFAULT_DSN))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s runs, 16 connections, 1,000 keys, 3 failover trials, 5 s scale",
    )
    return p


def quick(args: argparse.Namespace) -> None:
    args.duration = 2.0
    args.conns = [16]
    args.keys = [1, 1000]
    args.failover_trials = 3
    args.scale_leases = 1000
    args.scale_duration = 5.0


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def environment() -> dict[str, Any]:
    commit = _version(["git", "-C", str(procs.REPO), "rev-parse", "--short", "HEAD"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "cores": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "wrk": _version(["wrk", "-v"]) if wrk_path() else None,
        "etcd": _version(["etcd", "--version"]) if etcd_path() else None,
    }


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rows: list[throughput.Row] = []
        self.results: dict[str, Any] = {"environment": environment(), "unavailable": {}}

    def unavailable(self, what: str, why: str) -> None:
        print(f"{what}: not available: {why}", flush=True)
        self.results["unavailable"][what] = why

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def service(self, url: str, name: str, env: dict[str, str]) -> procs.Proc:
        return procs.service(url, workers=self.args.workers, log=self.log(name), env=env)

    # -- sections -----------------------------------------------------------------

    def load(self) -> None:
        """throughput, ceilings and etcd: every target started once, then interleaved rounds."""
        a = self.args
        sections = set(a.sections)
        with contextlib.ExitStack() as stack:
            plan: dict[tuple[int, int], list[throughput.Scenario]] = {
                (k, c): [] for k in a.keys for c in a.conns
            }
            contend: list[throughput.Scenario] = []
            if "throughput" in sections:
                for name in a.backends:
                    try:
                        url = self._start_service(stack, name)
                    except targets.NotAvailable as exc:
                        self.unavailable(f"throughput {name}", str(exc))
                        continue
                    for k, c in plan:
                        k2 = min(k, a.gcs_keys) if name == "gcs" else k
                        ops = [("acquire", k2, c), ("renew", k2, c)]
                        plan[k, c] += throughput.service_plan(url, target=name, op_keys=ops)
                    if 1 in a.keys:
                        ops = [("contend", 1, c) for c in a.conns]
                        contend += throughput.service_plan(url, target=name, op_keys=ops)
            if "ceilings" in sections:
                self._ceilings(stack, plan)
            if "etcd" in sections:
                if etcd_path() is None:
                    self.unavailable("etcd", "etcd is not installed (apt-get install etcd-server)")
                else:
                    print("== peer: etcd through its HTTP/JSON gateway", flush=True)
                    etcd = stack.enter_context(Etcd(self.workdir))
                    etcd.grant_leases(first=1000, count=max(a.keys), ttl=3600)
                    for k, c in plan:
                        plan[k, c] += throughput.etcd_plan(
                            etcd.url, lease0=1000, keys=k, conns=c, acquire=k == max(a.keys)
                        )
            flat = [s for part in plan.values() for s in part] + contend
            print(
                f"== {a.rounds} round(s) of {len(flat)} scenarios, {a.duration:g} s each",
                flush=True,
            )
            self.rows += rounds.run_rounds(flat, rounds=a.rounds, duration=a.duration)

    def _start_service(self, stack: contextlib.ExitStack, name: str) -> str:
        """The service on backend ``name``, its keys pre-acquired; its URL."""
        a = self.args
        # memory:// is one process's store: one worker, or a renew may reach a worker
        # that never saw the acquire
        workers = 1 if name == "memory" else a.workers
        print(f"== service: {name} backend, {workers} worker(s)", flush=True)
        url, env = stack.enter_context(targets.backend_url(name, self.workdir, a.pg_dsn))
        svc = stack.enter_context(
            procs.service(url, workers=workers, log=self.log(f"service-{name}"), env=env)
        )
        for k in a.keys:
            throughput.prepare(svc.port, min(k, a.gcs_keys) if name == "gcs" else k)
        return svc.url

    def _ceilings(
        self, stack: contextlib.ExitStack, plan: dict[tuple[int, int], list[throughput.Scenario]]
    ) -> None:
        a = self.args
        apps = [("bare ASGI", "bench.bare_app:app", a.workers)]
        if a.workers != 1:  # memory:// runs on one worker: its own ceiling beside it
            apps.append(("bare ASGI 1w", "bench.bare_app:app", 1))
        apps.append(("no-op", "bench.noop_app:app", a.workers))
        for target, app, workers in apps:
            print(f"== ceiling: {target} ({app}), {workers} worker(s)", flush=True)
            proc = procs.noop_app(workers=workers, log=self.log(target.replace(" ", "-")), app=app)
            url = stack.enter_context(proc).url
            for k, c in plan:
                plan[k, c].append(throughput.ceiling_plan(url, target=target, keys=k, conns=c))
        why = targets.pg_reachable(a.pg_dsn)
        if why:
            self.unavailable("ceiling pg raw", why)
            return
        for k, c in plan:
            for op in ("acquire", "renew"):
                plan[k, c].append(throughput.pg_raw_plan(a.pg_dsn, op=op, keys=k, conns=c))

    def failover(self) -> None:
        from bench import failover

        a = self.args
        why = failover.unavailable_reason()
        if why:
            self.unavailable("failover", why)
            return
        # PostgreSQL first: its NOTIFY wakes watchers on every worker at once; with
        # files a worker learns of another worker's release only at its next poll.
        order = [a.failover_backend] if a.failover_backend else ["postgresql", "file"]
        for name in order:
            try:
                with targets.backend_url(name, self.workdir, a.pg_dsn) as (url, env):
                    print(
                        f"== failover: {a.failover_trials} trials each, {name} backend", flush=True
                    )
                    with self.service(url, f"service-failover-{name}", env) as svc:
                        out = failover.run_failover(
                            svc.url, trials=a.failover_trials, workdir=self.workdir
                        )
                    self.results["failover"] = {"backend": name, **out}
                    if not out["watch_stream"]:
                        self.unavailable(
                            "failover with the watch stream", "the client has no watch option"
                        )
                    return
            except targets.NotAvailable as exc:
                self.unavailable(f"failover {name}", str(exc))

    def scale(self) -> None:
        from bench.scale import run_scale

        a = self.args
        order = [a.scale_backend] if a.scale_backend else ["postgresql", "file"]
        for name in order:
            try:
                with targets.backend_url(name, self.workdir, a.pg_dsn) as (url, env):
                    print(
                        f"== scale: {a.scale_leases} leases, ttl {a.scale_ttl:g} s, renewed "
                        f"every ttl/3 for {a.scale_duration:g} s, {name} backend",
                        flush=True,
                    )
                    with self.service(url, f"scale-{name}", env) as svc:
                        out = run_scale(
                            svc,
                            leases=a.scale_leases,
                            ttl=a.scale_ttl,
                            duration=a.scale_duration,
                        )
                    self.results["scale"] = {"backend": name, **out}
                    print(f"  {out}", flush=True)
                    return
            except targets.NotAvailable as exc:
                self.unavailable(f"scale {name}", str(exc))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        quick(args)
    if wrk_path() is None and set(args.sections) & {"throughput", "ceilings", "etcd", "scale"}:
        print(
            "bench: wrk is not installed (apt-get install wrk); it is the load generator",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="leaderelection-bench-") as tmp:
        run = Run(args, Path(tmp))
        if set(args.sections) & {"throughput", "ceilings", "etcd"}:
            run.load()
        for section in ("failover", "scale"):
            if section in args.sections:
                getattr(run, section)()
        run.results["environment"]["loadavg_end"] = os.getloadavg()
        run.results["settings"] = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        }
        rows = [r.as_dict() for r in run.rows]
        run.results["throughput"] = rows
        print()
        if rows:
            print(report.table(rows))
        for line in report.summary(run.results):
            print(line)
        run.results["targets"] = report.check_targets(run.results)
        print()
        for t in run.results["targets"]:
            print(f"{t['verdict']:<5} {t['target']}: {t['figure']}")
        path = report.save(run.results, args.out)
        print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
