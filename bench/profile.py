"""Where the service's CPU goes under load: py-spy on one worker, by layer.

Example::

    .venv/bin/pip install py-spy        # not a project dependency
    .venv/bin/python -m bench.profile --backend postgresql --op renew --seconds 15

Starts the service with one worker on the chosen backend, loads it with wrk
(64 connections, 10,000 keys), samples the worker with ``py-spy record
--gil`` (only the thread holding the GIL: Python's CPU), and prints the share
of samples per layer, by the innermost frame (self) and by any frame on the
stack (inclusive). The raw stacks stay in bench/results/ for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs, targets, throughput
from bench.wrk import run_wrk

# (layer, fragment of a py-spy frame "func (path:line)"): the first match names the layer.
LAYERS = [
    ("psycopg (driver)", "(psycopg"),
    ("SQLAlchemy (pool, engine)", "(sqlalchemy/"),
    ("google-cloud-storage, requests", "(google/"),
    ("google-cloud-storage, requests", "(requests/"),
    ("google-cloud-storage, requests", "(urllib3/"),
    ("backend code", "(leaderelection_service/backends/"),
    ("records, JSON shaping", "(leaderelection_service/records"),
    ("lease rules", "(leaderelection_service/leases"),
    ("HTTP layer (routes, deps, errors)", "(leaderelection_service/api/"),
    ("pydantic", "(pydantic"),
    ("FastAPI", "(fastapi/"),
    ("Starlette", "(starlette/"),
    ("uvicorn, httptools", "(uvicorn/"),
    ("anyio (threads)", "(anyio/"),
    ("asyncio, threads, queues", "(asyncio/"),
    ("asyncio, threads, queues", "threading.py"),
    ("asyncio, threads, queues", "(concurrent/"),
    ("asyncio, threads, queues", "(queue.py"),
    ("json", "(json/"),
    ("datetime", "datetime"),
]


def layer_of(frame: str) -> str | None:
    for name, frag in LAYERS:
        if frag in frame:
            return name
    return None


def summarize(raw: str) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    selfc: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        layers = [layer_of(f) for f in stack.split(";")]
        known = [x for x in layers if x]
        selfc[known[-1] if known else "other (interpreter, C)"] += n
        for x in set(known):
            incl[x] += n
    return total, selfc, incl


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backend", default="postgresql", choices=["file", "postgresql", "gcs", "memory"]
    )
    p.add_argument("--op", default="renew", choices=["renew", "acquire"])
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    raw_path = args.out / f"profile-{args.backend}-{args.op}.txt"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        with (
            targets.backend_url(args.backend, work, args.pg_dsn) as (url, env),
            procs.service(url, workers=1, log=work / "service.log", env=env) as svc,
        ):
            throughput.prepare(svc.port, args.keys)
            cmd = [spy, "record", "--gil", "--rate", "250", "--format", "raw",
                   "--duration", str(args.seconds), "--pid", str(svc.pid),
                   "--output", str(raw_path), "--nonblocking"]  # fmt: skip
            spying = threading.Thread(
                target=subprocess.run, args=(cmd,), kwargs={"capture_output": True}
            )
            spying.start()
            res = run_wrk(svc.url, op=args.op, keys=args.keys, connections=args.conns,
                          duration=args.seconds,
                          env={"BENCH_HOLDER": throughput.HOLDER, "BENCH_TOKEN": "1",
                               "BENCH_TTL": str(throughput.TTL)})  # fmt: skip
            spying.join()
    total, selfc, incl = summarize(raw_path.read_text())
    print(f"{args.backend} {args.op}, 1 worker, {args.conns} connections: {res.rps:.0f}/s, "
          f"p99 {res.p99_ms:.1f} ms; {total} samples with the GIL held")  # fmt: skip
    print(f"{'layer':<36}{'self':>7}{'incl.':>7}")
    for name, n in selfc.most_common():
        print(f"{name:<36}{n / total:>7.0%}{incl.get(name, n) / total:>7.0%}")
    print(f"raw stacks: {raw_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
