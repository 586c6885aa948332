"""Section 4, scale: many live leases, each renewed every ttl/3, for a while.

Example::

    out = run_scale(svc, leases=10_000, ttl=15, duration=60)
    out["renew_p99_ms"], out["errors"], out["cpu_cores"], out["peak_rss_mb"]

The keys are acquired first, with the ttl of ``throughput.TTL`` (an hour):
setting up 100,000 leases takes longer than a 60 s ttl on this machine, and
in service leases are not all born in the same minute; the first renewal
sets each lease's ttl to ``ttl``, so the steady state is the one measured.
Then wrk renews them open-loop at
``leases / (ttl / 3)`` requests/s in total (paced by the wrk script, so a
slow answer delays no later renewal, as with independent clients), with
enough connections (rate / 4: answers within 250 ms keep the pace) that
pacing, not connections, sets the rate; the target counts as met only when
the rate was delivered. Any answer
but 200 is an error: a 409 here is a lost lease. Afterwards every lease must
still be held. CPU and peak memory are the service's whole process tree.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from bench.procs import Proc
from bench.throughput import HOLDER, TTL, prepare
from bench.wrk import run_wrk


def held_count(port: int, prefix: str = "k") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    held, cursor = 0, None
    try:
        while True:
            q = f"/v1/leases?prefix={prefix}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            conn.request("GET", q)
            page = json.loads(conn.getresponse().read())
            held += sum(1 for lease in page["leases"] if lease["held"])
            cursor = page.get("next_cursor")
            if not cursor:
                return held
    finally:
        conn.close()


def run_scale(svc: Proc, *, leases: int, ttl: float, duration: float) -> dict[str, Any]:
    prepare(svc.port, leases, ttl=max(ttl, TTL))
    threads = 2
    rate = leases / (ttl / 3)
    # wrk waits for each answer before a connection's next request: with enough
    # connections that answers within 250 ms keep the pace, the pacing sets the rate.
    connections = max(64, int(rate / 4))
    before = svc.usage()
    res = run_wrk(
        svc.url,
        op="renew",
        keys=leases,
        connections=connections,
        duration=duration,
        threads=threads,
        rate_per_thread=rate / threads,
        env={"BENCH_HOLDER": HOLDER, "BENCH_TOKEN": "1", "BENCH_TTL": str(ttl)},
    )
    after = svc.usage()
    still_held = held_count(svc.port)
    return {
        "leases": leases,
        "ttl_s": ttl,
        "target_rps": round(rate, 1),
        **res.as_dict(),
        "errors": res.errors + res.conflict,
        "renew_p99_ms": res.p99_ms,
        "held_after": still_held,
        "cpu_cores": round((after.cpu_s - before.cpu_s) / res.seconds, 2),
        "peak_rss_mb": round(after.peak_rss_mb, 1),
        "processes": after.processes,
    }
