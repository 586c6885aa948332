"""The printed table and the JSON file of one benchmark run.

Example::

    print(table(rows))
    path = save(results, Path("bench/results"))
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else ""


def table(rows: list[dict[str, Any]]) -> str:
    """One line per scenario, with service ÷ ceiling and ÷ etcd where they apply."""
    noop = {r["conns"]: r["rps"] for r in rows if r["target"] == "no-op"}  # keys: no matter
    raw = {(r["op"], r["keys"], r["conns"]): r["rps"] for r in rows if r["target"] == "pg raw"}
    etcd = {
        (r["op"], r["keys"] if r["op"] == "renew" else None, r["conns"]): r["rps"]
        for r in rows
        if r["target"] == "etcd"
    }
    head = (
        f"{'target':<11}{'op':<9}{'keys':>6}{'conns':>6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'409':>7}{'errors':>7}{'÷no-op':>8}{'÷pg raw':>8}{'÷etcd':>7}{'load':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        service = r["target"] not in ("no-op", "pg raw", "etcd")
        to_noop = ratio(r["rps"], noop.get(r["conns"])) if service else ""
        to_raw = (
            ratio(r["rps"], raw.get((r["op"], r["keys"], r["conns"])))
            if r["target"] == "postgresql"
            else ""
        )
        to_etcd = ""
        if service and r["op"] in ("acquire", "renew"):
            k = r["keys"] if r["op"] == "renew" else None
            to_etcd = ratio(r["rps"], etcd.get((r["op"], k, r["conns"])))
        keys = "fresh" if r["target"] == "etcd" and r["op"] == "acquire" else str(r["keys"])
        lines.append(
            f"{r['target']:<11}{r['op']:<9}{keys:>6}{r['conns']:>6}{r['rps']:>9.0f}"
            f"{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['conflict']:>7}{r['errors']:>7}"
            f"{to_noop:>8}{to_raw:>8}{to_etcd:>7}{r.get('loadavg_1m', ''):>6}"
        )
    return "\n".join(lines)


def save(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _find(rows: list[dict[str, Any]], target: str, op: str, keys: int | None, conns: int) -> Any:
    for r in rows:
        same = r["target"] == target and r["op"] == op and r["conns"] == conns
        if same and (keys is None or r["keys"] == keys):
            return r
    return None


def summary(results: dict[str, Any]) -> list[str]:
    out = []
    f = results.get("failover")
    if f:
        out.append("")
        title = f"failover ({f.get('backend', 'file')}), ms"
        out.append(f"{title:<44}{'median':>8}{'max':>8}{'trials':>8}")
        for name, s in f["scenarios"].items():
            out.append(f"{name:<44}{s['median_ms']:>8.0f}{s['max_ms']:>8.0f}{s['trials']:>8}")
    s = results.get("scale")
    if s:
        out.append("")
        out.append(
            f"scale ({s['backend']}): {s['leases']} leases, ttl {s['ttl_s']:g} s, "
            f"{s['rps']:.0f} renewals/s (target {s['target_rps']:.0f}) for {s['seconds']:.0f} s: "
            f"p50 {s['p50_ms']:.1f} ms, p99 {s['renew_p99_ms']:.1f} ms, errors {s['errors']}, "
            f"held after {s['held_after']}, CPU {s['cpu_cores']} cores, "
            f"peak RSS {s['peak_rss_mb']:.0f} MB over {s['processes']} processes"
        )
    for what, why in results.get("unavailable", {}).items():
        out.append(f"not available: {what}: {why}")
    return out


def check_targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's performance targets, each PASS, FAIL or n/a with its figures."""
    rows = results.get("throughput", [])
    checks: list[dict[str, str]] = []

    def add(target: str, ok: bool | None, figure: str) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        checks.append({"target": target, "verdict": verdict, "figure": figure})

    noop = _find(rows, "no-op", "renew", None, 64)
    for backend in ("postgresql", "file"):
        renew = _find(rows, backend, "renew", 10_000, 64)
        if renew and noop:
            add(
                f"{backend} renew (64 conns, 10,000 keys) >= 50% of no-op",
                renew["rps"] >= 0.5 * noop["rps"],
                f"{renew['rps']:.0f} vs {noop['rps']:.0f}/s = {renew['rps'] / noop['rps']:.0%}",
            )
        else:
            add(f"{backend} renew >= 50% of no-op", None, "not measured")
        if renew:
            add(
                f"{backend} renew p99 < 50 ms (64 conns, 10,000 keys)",
                renew["p99_ms"] < 50,
                f"{renew['p99_ms']:.1f} ms",
            )
    pg_renew = _find(rows, "postgresql", "renew", 10_000, 64)
    pg_acq = _find(rows, "postgresql", "acquire", 10_000, 64)
    raw = _find(rows, "pg raw", "renew", 10_000, 64)
    ka = _find(rows, "etcd", "renew", 10_000, 64)
    txn = _find(rows, "etcd", "acquire", None, 64)
    pairs = [
        ("postgresql renew >= raw statement ceiling", pg_renew, raw, 1.0),
        ("postgresql renew >= etcd lease keep-alive", pg_renew, ka, 1.0),
        ("postgresql acquire >= 1.5x etcd create-if-absent txn", pg_acq, txn, 1.5),
    ]
    for name, a, b, k in pairs:
        if a and b:
            add(
                name,
                a["rps"] >= k * b["rps"],
                f"{a['rps']:.0f} vs {b['rps']:.0f}/s = {a['rps'] / b['rps']:.2f}x",
            )
        else:
            add(name, None, "not measured")
    f = results.get("failover")
    if f:
        crash = f["scenarios"].get("crash (SIGKILL)")
        bound = f["ttl_s"] * 1000 + f["retry_s"] * 1000 + 50
        if crash:
            add(
                f"crash failover max <= ttl + retry + 50 ms ({bound:.0f} ms)",
                crash["max_ms"] <= bound,
                f"median {crash['median_ms']:.0f} ms, max {crash['max_ms']:.0f} ms",
            )
        watch = f["scenarios"].get("graceful, watch stream")
        if watch:
            add(
                "graceful handoff with watch: median < 100 ms",
                watch["median_ms"] < 100,
                f"median {watch['median_ms']:.0f} ms",
            )
        else:
            add("graceful handoff with watch: median < 100 ms", None, "watch stream not available")
    else:
        add("failover targets", None, "not measured")
    s = results.get("scale")
    if s:
        add(
            f"scale: {s['leases']} leases renewed every ttl/3, zero errors, p99 < ttl/10",
            s["errors"] == 0
            and s["held_after"] == s["leases"]
            and s["rps"] >= 0.95 * s["target_rps"]
            and s["renew_p99_ms"] < s["ttl_s"] * 100,
            f"{s['rps']:.0f} of {s['target_rps']:.0f} renewals/s, errors {s['errors']}, "
            f"held {s['held_after']}, p99 {s['renew_p99_ms']:.1f} ms",
        )
    else:
        add("scale", None, "not measured")
    return checks
