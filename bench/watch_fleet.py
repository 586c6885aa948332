"""A prefix watch over a large fleet: replay time, then a live change, and memory.

Example::

    .venv/bin/python bench/watch_fleet.py                    # 10,000 and 20,000 leases
    .venv/bin/python bench/watch_fleet.py --leases 50000 --streams 4

For each size, the leases are written through the file backend's object
before the service starts. Then ``--streams`` prefix streams of the whole
fleet are opened at once and read to the end of their replay; the figures
are the time until every stream had replayed every key, the time from an
acquire sent after that until every stream had its event, whether any
stream ended, and the service's RSS before and after. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench import procs
from bench.fleet import populate, rss_mb


async def one_stream(url: str, count: int, replayed: asyncio.Event, live: str) -> float:
    """Reads the replay, then waits for ``live``; returns when that event arrived."""
    seen = 0
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", f"{url}/v1/watch?prefix=") as resp,
    ):
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event["replay"]:
                seen += 1
                if seen == count:
                    replayed.set()
            elif event["key"] == live:
                return time.perf_counter()
    raise RuntimeError(f"the stream ended after {seen} of {count} replayed keys")


async def measure(url: str, count: int, streams: int) -> dict[str, float]:
    live = "live.after-replay"
    events = [asyncio.Event() for _ in range(streams)]
    started = time.perf_counter()
    tasks = [asyncio.create_task(one_stream(url, count, e, live)) for e in events]
    for e in events:
        await e.wait()
    replay = time.perf_counter() - started
    async with httpx.AsyncClient(base_url=url) as client:
        sent = time.perf_counter()
        r = await client.post(f"/v1/leases/{live}/acquire", json={"holder": "h", "ttl": 60})
        r.raise_for_status()
    arrived = await asyncio.gather(*tasks)
    return {"replay_s": replay, "live_ms": (max(arrived) - sent) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--leases", type=int, nargs="+", default=[10_000, 20_000])
    ap.add_argument("--streams", type=int, default=2)
    args = ap.parse_args()
    print("command:", " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]))
    for count in args.leases:
        with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
            url = Path(tmp, "data").as_uri()
            asyncio.run(populate(url, count))
            with procs.service(url, workers=1, log=Path(tmp, "service.log")) as svc:
                before = rss_mb(svc.pid)
                got = asyncio.run(measure(svc.url, count, args.streams))
                after = rss_mb(svc.pid)
        print(
            f"leases {count:>6}  streams {args.streams}  every replay done in "
            f"{got['replay_s']:6.2f} s  then a live change on every stream in "
            f"{got['live_ms']:7.1f} ms  (no stream ended)  RSS {before:5.1f} -> {after:5.1f} MB"
        )
    print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
