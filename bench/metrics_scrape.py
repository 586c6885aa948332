"""``GET /metrics`` at fleet size: how long a scrape takes with 20,000 leases.

Example::

    .venv/bin/python bench/metrics_scrape.py                      # 20,000 leases, file backend
    .venv/bin/python bench/metrics_scrape.py --leases 50000 --refresh 2 --seconds 20

The leases are written through the backend object before the service starts
(every tenth released). The first scrape lists the backend, as every scrape
did before the lease gauges were kept in memory; the scrapes after it, every
``--every`` seconds for ``--seconds``, answer from memory while a listing
runs in the background every ``--refresh`` seconds (so some of them share
the process with a listing, as they would in production). It prints the
first scrape, median, 90th percentile and max of the rest, their ratio to the
first (within this run), the service's RSS before and after, and the load
average. Nothing is asserted: the figures belong in docs/benchmarks.md.
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
from bench.fleet import populate, rss_mb


def scrape(http: httpx.Client) -> float:
    started = time.perf_counter()
    r = http.get("/metrics")
    took = time.perf_counter() - started
    if r.status_code != 200 or 'leaderelection_leases{state="held"}' not in r.text:
        raise RuntimeError(f"scrape failed: {r.status_code} {r.text[-300:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--leases", type=int, default=20_000)
    ap.add_argument(
        "--backend-url", help="an empty backend to fill (default: a fresh file:// directory)"
    )
    ap.add_argument(
        "--refresh", type=float, default=2.0, help="--metrics-refresh-interval of the service"
    )
    ap.add_argument("--every", type=float, default=0.25, help="seconds between two scrapes")
    ap.add_argument(
        "--seconds", type=float, default=15.0, help="how long to scrape after the first"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        url = args.backend_url or Path(tmp, "data").as_uri()
        started = time.perf_counter()
        asyncio.run(populate(url, args.leases, release_every=10))
        print(f"wrote {args.leases} leases in {time.perf_counter() - started:.1f} s")
        extra = ("--metrics-refresh-interval", str(args.refresh))
        with (
            procs.service(url, workers=1, log=Path(tmp, "service.log"), extra=extra) as svc,
            httpx.Client(base_url=svc.url, timeout=60) as http,
        ):
            rss_before = rss_mb(svc.pid)
            first = scrape(http)
            figures = []
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                figures.append(scrape(http))
                time.sleep(args.every)
            rss_after = rss_mb(svc.pid)
    ms = sorted(f * 1000 for f in figures)
    med = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    print("command:", " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]) or sys.argv[0])
    print(f"leases {args.leases}, refresh {args.refresh:g} s, a scrape every {args.every:g} s")
    print(f"first scrape (lists the backend)      {first * 1000:8.1f} ms")
    print(
        f"later scrapes n={len(ms):<4} median {med:8.1f} ms   p90 {p90:8.1f} ms"
        f"   max {ms[-1]:8.1f} ms"
    )
    print(f"first / median                        {first * 1000 / med:8.1f}")
    print(
        f"service RSS before the first scrape {rss_before:6.1f} MB,"
        f" after the run {rss_after:6.1f} MB"
    )
    print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
