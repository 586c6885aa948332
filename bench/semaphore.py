"""Semaphore keys beside single leases: acquire and renew throughput through the HTTP API.

Example::

    .venv/bin/python bench/semaphore.py                              # file backend
    .venv/bin/python bench/semaphore.py --backend-url postgresql://postgres@127.0.0.1/test
    .venv/bin/python bench/semaphore.py --holders 16 --limit 16 --duration 5

One service (``leaderelection serve``, one worker) on the backend; ``--holders``
asyncio clients, each with its own connection, in three scenarios run in turn:

- ``single``: every client holds a single lease of its own key (limit 1);
- ``semaphore``: every client holds one slot of one key of limit ``--limit``
  (every write reads, decides and compare-and-sets the one record of the key,
  with all its slots: the cost of a semaphore);
- ``semaphore-keys``: as ``single``, but each key is a semaphore (limit
  ``--limit``) with one slot held: the cost of the record's form alone.

In each, every client acquires once, then renews as fast as it can for
``--duration`` seconds; the figures are acquires per second (the first
round, all at once) and renewals per second, with the median latency, and
the load average when the scenario ended. The machine may be shared: quote
the load average with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench import procs


async def scenario(
    url: str, name: str, holders: int, limit: int, duration: float
) -> dict[str, float]:
    shared = name == "semaphore"
    key_limit = 1 if name == "single" else limit

    async def client(i: int, out: list[float], acquired: list[float]) -> int:
        key = f"{name}-shared" if shared else f"{name}-{i}"
        body: dict[str, object] = {"holder": f"h{i}", "ttl": 30}
        if key_limit != 1:
            body["limit"] = key_limit
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            t = time.perf_counter()
            r = await http.post(f"/v1/leases/{key}/acquire", json=body)
            acquired.append(time.perf_counter() - t)
            r.raise_for_status()
            renew = {"holder": f"h{i}", "fencing_token": r.json()["fencing_token"]}
            end = time.monotonic() + duration
            n = 0
            while time.monotonic() < end:
                t = time.perf_counter()
                r = await http.post(f"/v1/leases/{key}/renew", json=renew)
                out.append(time.perf_counter() - t)
                r.raise_for_status()
                n += 1
            await http.post(f"/v1/leases/{key}/release", json=renew)
            return n

    latencies: list[float] = []
    acquires: list[float] = []
    started = time.perf_counter()
    counts = await asyncio.gather(*(client(i, latencies, acquires) for i in range(holders)))
    took = time.perf_counter() - started
    return {
        "acquire_ms_median": 1000 * statistics.median(acquires),
        "acquires_per_s": holders / max(acquires),
        "renews_per_s": sum(counts) / took,
        "renew_ms_median": 1000 * statistics.median(latencies),
        "load1": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--backend-url", default=None, help="default: a fresh file backend")
    p.add_argument("--holders", type=int, default=8)
    p.add_argument("--limit", type=int, default=8, help="the semaphore's limit (>= holders)")
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.limit < args.holders:
        p.error("--limit must be at least --holders (every client holds a slot)")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.backend_url or (Path(tmp) / "data").as_uri()
        (Path(tmp) / "data").mkdir()
        with procs.service(url, workers=1, log=Path(tmp) / "svc.log") as svc:
            print(f"backend {url.split('@')[-1]}, {args.holders} holders, limit {args.limit}")
            print("| scenario | acquire ms (median) | renews/s | renew ms (median) | load1 |")
            print("|---|--:|--:|--:|--:|")
            for name in ("single", "semaphore", "semaphore-keys"):
                r = asyncio.run(scenario(svc.url, name, args.holders, args.limit, args.duration))
                print(
                    f"| {name} | {r['acquire_ms_median']:.2f} | {r['renews_per_s']:.0f} | "
                    f"{r['renew_ms_median']:.2f} | {r['load1']:.2f} |",
                    flush=True,
                )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
