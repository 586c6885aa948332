"""What each attack does to an established leader's renewals: p50, p99, max and errors.

Example::

    .venv/bin/python bench/attack.py                                  # every attack, 5 s each
    .venv/bin/python bench/attack.py --attacks big-headers,slowloris --duration 10

Starts ``leaderelection serve`` on loopback (file backend in a fresh
directory, authentication on: a write token scoped to ``team-a.`` for the
leader, one scoped to ``team-b.`` for the other tenant, one read token). The
leader holds ``team-a.leader`` and renews it every 75 ms on one kept-alive
connection, from a thread of this process, for the whole run. The run is a
phase with no attack, then for each attack (``bench/attacks.py``) a phase
with 1 attacker process and one with 4; each phase lasts ``--duration``
seconds and the table gives the renewals sent in it: their latency, how many
failed (an answer other than 200, or no answer), how many needed a new
connection, and how long after the phase the service answered /healthz
again. The 20,000 leases of the /metrics attack are stored just before it
(through the file backend, from this process), so that the attacks before it
run on a small store. Attackers are processes, so that they do not take the leader's
interpreter lock. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs
from bench.attacks import ATTACKS, DEFENCES, Target, run_attacker

LEADER_KEY = "team-a.leader"
RENEW_EVERY = 0.075
FLEET = 20_000
"""Leases stored before the /metrics attack, as in the report that found it."""


@dataclass
class Sample:
    at: float
    latency: float
    ok: bool
    new_connection: bool


@dataclass
class Leader:
    """Renews ``LEADER_KEY`` on one connection every ``RENEW_EVERY`` seconds, in a thread."""

    port: int
    token: str
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.fencing = self._post("acquire", {"holder": "leader", "ttl": 10})[1]["fencing_token"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _post(self, op: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.conn.request("POST", f"/v1/leases/{LEADER_KEY}/{op}", json.dumps(body), self.headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")

    def _run(self) -> None:
        while not self.stop.wait(RENEW_EVERY):
            fresh = self.conn.sock is None
            start = time.perf_counter()
            try:
                status, lease = self._post(
                    "renew", {"holder": "leader", "fencing_token": self.fencing}
                )
                ok = status == 200
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                self.conn.close()
                status = 0
            latency = time.perf_counter() - start
            self.samples.append(Sample(time.monotonic(), latency, ok, fresh))
            if status == 409:  # lost: take it again so that the next phases measure renewals
                try:
                    s, lease = self._post("acquire", {"holder": "leader", "ttl": 10})
                    if s == 200:
                        self.fencing = lease["fencing_token"]
                except (OSError, http.client.HTTPException, ValueError):
                    self.conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        self.conn.close()


def summarise(samples: list[Sample]) -> dict[str, Any]:
    lat = sorted(s.latency * 1000 for s in samples)
    if not lat:
        return {"renewals": 0}
    return {
        "renewals": len(lat),
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "max_ms": round(lat[-1], 2),
        "errors": sum(not s.ok for s in samples),
        "new_connections": sum(s.new_connection for s in samples),
    }


def phase(leader: Leader, target: Target, attack: str | None, n: int, duration: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    go = ctx.Event()
    attackers = [
        ctx.Process(target=run_attacker, args=(attack, target, duration, go, results), daemon=True)
        for _ in range(n if attack else 0)
    ]
    for p in attackers:
        p.start()
    for _ in attackers:  # started and imported: the phase's clock starts now
        results.get(timeout=60)
    start = time.monotonic()
    go.set()
    until = start + duration
    procs.wait_until(lambda: time.monotonic() >= until, duration + 1, what="the phase's end")
    ops = 0
    for p in attackers:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()
    while not results.empty():
        ops += results.get()[1]
    end = time.monotonic()
    row = {
        "attack": attack or "none",
        "attackers": len(attackers),
        **summarise([s for s in leader.samples if start <= s.at < end]),
        "attack_ops": ops,
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }
    if attack in DEFENCES:
        row["defence"] = DEFENCES[attack]
    # The next phase starts once the service answers again: how long that took.
    row["recovery_s"] = recovery(target.port, end)
    return row


def recovery(port: int, since: float, limit: float = 120.0) -> float | None:
    """Seconds from ``since`` until /healthz answers 200; None if not within ``limit``."""
    try:
        procs.wait_until(lambda: procs.http_status(port, "/healthz") == 200, limit, "/healthz")
    except TimeoutError:
        return None
    return round(time.monotonic() - since, 1)


def store_fleet(backend_url: str) -> None:
    """``FLEET`` leases in the backend, written through it before the service starts."""
    from leaderelection_service.registry import open_backend
    from leaderelection_service.settings import Settings

    async def fill() -> None:
        backend = open_backend(backend_url, Settings(backend_url=backend_url))
        try:
            for first in range(0, FLEET, 500):
                await asyncio.gather(
                    *(
                        backend.acquire(f"fleet.k{i}", "fleet", 3600.0)
                        for i in range(first, min(first + 500, FLEET))
                    )
                )
        finally:
            await backend.close()

    asyncio.run(fill())


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'attack':<18}{'attackers':>10}{'renewals':>9}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}"
        f"{'errors':>7}{'new conn':>9}{'attack ops':>11}{'recover s':>10}{'load':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['attack']:<18}{r['attackers']:>10}{r['renewals']:>9}{r.get('p50_ms', 0):>8.1f}"
            f"{r.get('p99_ms', 0):>9.1f}{r.get('max_ms', 0):>9.1f}{r.get('errors', 0):>7}"
            f"{r.get('new_connections', 0):>9}{r['attack_ops']:>11}"
            f"{'never' if r['recovery_s'] is None else r['recovery_s']:>10}{r['loadavg_1m']:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--attacks", default=",".join(ATTACKS), help="comma-separated, of: " + ", ".join(ATTACKS)
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase (5)")
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (1)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        parser.error(f"unknown attack(s): {', '.join(unknown)}; known: {', '.join(ATTACKS)}")

    with tempfile.TemporaryDirectory(prefix="leaderelection-attack-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        url = (root / "data").as_uri()
        names = {"leader": ("write", "team-a."), "tenant_b": ("write", "team-b."),
                 "reader": ("read", "")}  # fmt: skip
        tokens = {name: os.urandom(24).hex() for name in names}
        entries = [{"token": tokens[n], "role": r, "prefix": p} for n, (r, p) in names.items()]
        (root / "tokens.json").write_text(json.dumps(entries))
        extra = ("--auth-file", str(root / "tokens.json"))
        with procs.service(url, workers=args.workers, log=root / "service.log", extra=extra) as svc:
            target = Target(port=svc.port, tokens=tokens)
            leader = Leader(svc.port, tokens["leader"])
            rows: list[dict[str, Any]] = []
            try:
                for attack, n in [(None, 0)] + [(a, k) for a in attacks for k in (1, 4)]:
                    if attack == "metrics-scrape" and n == 1:
                        # Stored now, not before: the other attacks run on a small store.
                        print(f"storing {FLEET} leases for the /metrics attack ...", flush=True)
                        store_fleet(url)
                    rows.append(phase(leader, target, attack, n, args.duration))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    if rows[-1]["recovery_s"] is None:
                        print("the service did not answer /healthz again: run stopped", flush=True)
                        break
            finally:
                leader.close()
    print()
    print(table(rows))
    print(f"\nrenew every {RENEW_EVERY * 1000:.0f} ms on one kept-alive connection; "
          f"{args.duration:g} s per phase; load average {os.getloadavg()}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
