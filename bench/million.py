"""A million stored keys on PostgreSQL: listing, paging, watch replay and /metrics.

Example::

    .venv/bin/python -m bench.million --keys 1000000

Starts ``leaderelection serve`` on a fresh PostgreSQL table, acquires one
key through the API (so the row is the service's own), copies that row to
``--keys`` keys with one ``INSERT … SELECT generate_series`` (a million
acquires through HTTP would take longer than the run), then times, each the
median of a few tries on a warm service: the first page of the listing,
consecutive pages at the largest page size, a prefix listing deep in the key
space, a watch of every key on a cold service (its first event and replay
rate), the dashboard's first row in Chromium (``--chromium``), watches of
narrower prefixes and of every key again, and
``GET /metrics`` (whose lease gauges come from a background listing of
every key). Prints one line per figure and the service's RSS. The keys are
``m0000000`` … in order (a prefix of n characters covers up to 10^(8-n) of
them), all held by one holder with a long ttl.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs, targets, throughput


def timed(fn: Callable[[], object], tries: int = 5) -> float:
    """Median milliseconds of ``tries`` calls."""
    out = []
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def watch_replay(
    port: int, prefix: str, seconds: float, head_s: float = 300
) -> tuple[int, float, float, int, float]:
    """A watch of ``prefix``: its status, ms to the answer's head, ms to its first event,
    events read within ``seconds`` after the head, seconds from the request to the last."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=head_s)
    t0 = time.perf_counter()
    conn.request("GET", f"/v1/watch?prefix={prefix}")
    resp = conn.getresponse()
    head = (time.perf_counter() - t0) * 1000
    if conn.sock is not None:
        conn.sock.settimeout(seconds)
    first, events, last = 0.0, 0, 0.0
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            line = resp.fp.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                events += 1
                last = time.perf_counter() - t0
                if events == 1:
                    first = last * 1000
    except TimeoutError:
        pass  # the replay ended and the stream waits for changes
    conn.close()
    return resp.status, head, first, events, last


def first_render(url: str, timeout_s: float) -> str:
    """The dashboard in headless Chromium: seconds until its first lease row shows."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "not available: playwright (pip install -e '.[test]')"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 640})
            t0 = time.perf_counter()
            page.goto(url + "/")
            try:
                page.locator("tr[data-key]").first.wait_for(timeout=timeout_s * 1000)
            except Exception:  # playwright's TimeoutError: say so, keep the other figures
                return f"no lease row within {timeout_s:g} s"
            return f"{time.perf_counter() - t0:.2f} s to the first lease row"
        finally:
            browser.close()


def fill(dsn: str, table: str, keys: int) -> float:
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "ORDER BY ordinal_position",
                (table,),
            )
        ]
        rest = ", ".join(c for c in cols if c != "lease_key")
        conn.execute(
            f"INSERT INTO {table} (lease_key, {rest}) "
            f"SELECT 'm' || lpad(i::text, 7, '0'), {rest} FROM {table}, "
            f"generate_series(0, %s) AS i WHERE lease_key = 'seed'",
            (keys - 1,),
        )
        conn.execute(f"ANALYZE {table}")
        size = conn.execute(
            f"SELECT pg_size_pretty(pg_table_size('{table}')), "
            f"pg_size_pretty(pg_indexes_size('{table}'))"
        ).fetchone()
        print(f"table {size[0]}, index {size[1]}", flush=True)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--watch-seconds", type=float, default=10.0)
    p.add_argument("--chromium", action="store_true", help="time the dashboard's first render")
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        work = Path(tmp)
        with targets.backend_url("postgresql", work, a.pg_dsn) as (url, env):
            table = env["LEADERELECTION_SQL_TABLE"]
            with procs.service(url, workers=a.workers, log=work / "s.log", env=env) as svc:
                conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
                body = json.dumps({"holder": throughput.HOLDER, "ttl": throughput.TTL})
                conn.request(
                    "POST",
                    "/v1/leases/seed/acquire",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                assert conn.getresponse().read()
                conn.close()
                print(f"insert {a.keys} rows: {fill(a.pg_dsn, table, a.keys):.1f} s", flush=True)
                port = svc.port
                figures = {
                    "first page, 100 keys": timed(lambda: get(port, "/v1/leases")),
                    "first page, 1,000 keys": timed(lambda: get(port, "/v1/leases?limit=1000")),
                }
                cursor = None

                def next_page() -> None:
                    nonlocal cursor
                    q = "/v1/leases?limit=1000" + (f"&cursor={cursor}" if cursor else "")
                    cursor = json.loads(get(port, q))["next_cursor"]

                figures["next page of 1,000 (10 consecutive)"] = timed(next_page, tries=10)
                mid = f"m{a.keys // 2:07d}"[:-2]  # 100 keys deep in the key space
                figures[f"prefix {mid} (100 keys)"] = timed(
                    lambda: get(port, f"/v1/leases?prefix={mid}&limit=1000")
                )
                figures["GET /metrics, first"] = timed(lambda: get(port, "/metrics"), tries=1)
                figures["GET /metrics"] = timed(lambda: get(port, "/metrics"))
                figures["GET / (dashboard HTML)"] = timed(lambda: get(port, "/"))
                for name, ms in figures.items():
                    print(f"{name:<40}{ms:>10.1f} ms", flush=True)
                # Every key first, on a hub that has read nothing yet (cold), then
                # the dashboard, then narrower prefixes and every key again.
                watches = ["m"] + (["dashboard"] if a.chromium else [])
                for prefix in [*watches, "m05000", "m0500", "m050", "m05", "m"]:
                    if prefix == "dashboard":
                        print(f"dashboard in Chromium: {first_render(svc.url, 30)}", flush=True)
                        continue
                    status, head, first, events, last = watch_replay(port, prefix, a.watch_seconds)
                    covers = min(a.keys, 10 ** (8 - len(prefix)))
                    print(
                        f"watch prefix {prefix!r} ({covers} keys): {status} "
                        f"after {head:.0f} ms, first event {first:.0f} ms, {events} events "
                        f"in {last:.1f} s",
                        flush=True,
                    )
                after = timed(lambda: get(port, "/metrics"))
                print(f"{'GET /metrics, after the watch':<40}{after:>10.1f} ms")
                use = svc.usage()
                print(
                    f"service: peak RSS {use.peak_rss_mb:.0f} MB over {use.processes} "
                    f"processes, CPU {use.cpu_s:.0f} s in all"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
