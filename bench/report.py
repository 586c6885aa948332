"""The printed table and the JSON file of one benchmark run.

Example::

    print(table(rows))
    path = save(results, Path("bench/results"))
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

Key = tuple[str, str, int, int]  # target, op, keys, conns
CEILINGS = ("bare ASGI", "bare ASGI 1w", "no-op", "pg raw", "etcd")


def _key(r: dict[str, Any]) -> Key:
    return (r["target"], r["op"], r["keys"], r["conns"])


def groups(rows: list[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Rows by scenario, in first-run order; one row per round."""
    out: dict[Key, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(_key(r), []).append(r)
    return out


def per_round_ratios(rows: list[dict[str, Any]], num: Key, den: Key) -> list[float]:
    """num's req/s ÷ den's, for every round both ran in (the two sides seconds apart)."""
    by_round: dict[tuple[Key, int], float] = {(_key(r), r.get("round", 1)): r["rps"] for r in rows}
    out = []
    for (k, rnd), rps in by_round.items():
        if k == num and by_round.get((den, rnd)):
            out.append(rps / by_round[(den, rnd)])
    return out


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median [min-max]`` (just the value for one round)."""
    if not values:
        return ""
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def comparators(k: Key, keys: set[Key]) -> dict[str, Key]:
    """The ceilings and peer a service scenario is divided by, where they ran."""
    target, op, nkeys, conns = k
    out: dict[str, Key] = {}
    if target in CEILINGS or op == "contend":
        return out
    bare = ("bare ASGI 1w", "renew", nkeys, conns)
    if target != "memory" or bare not in keys:
        bare = ("bare ASGI", "renew", nkeys, conns)
    out["÷bare"] = bare
    out["÷no-op"] = ("no-op", "renew", nkeys, conns)
    if target == "postgresql":
        out["÷pg raw"] = ("pg raw", op, nkeys, conns)
    if op == "renew":
        out["÷etcd"] = ("etcd", "renew", nkeys, conns)
    else:
        fresh = [x for x in keys if x[:2] == ("etcd", "acquire") and x[3] == conns]
        if fresh:
            out["÷etcd"] = fresh[0]
    return {name: den for name, den in out.items() if den in keys}


def table(rows: list[dict[str, Any]]) -> str:
    """One line per scenario (medians over the rounds), then each ratio's median and spread."""
    g = groups(rows)
    nrounds = max((len(v) for v in g.values()), default=1)
    head = (
        f"{'target':<13}{'op':<9}{'keys':>6}{'conns':>6}{'req/s':>9}{'min-max':>14}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'409':>7}{'errors':>7}{'load':>6}"
    )
    lines = [f"medians over {nrounds} round(s)", head, "-" * len(head)]
    for k, rs in g.items():
        rps = [r["rps"] for r in rs]
        mm = f"{min(rps):.0f}-{max(rps):.0f}" if len(rs) > 1 else ""
        keys = "fresh" if k[0] == "etcd" and k[1] == "acquire" else str(k[2])
        lines.append(
            f"{k[0]:<13}{k[1]:<9}{keys:>6}{k[3]:>6}{statistics.median(rps):>9.0f}{mm:>14}"
            f"{statistics.median(r['p50_ms'] for r in rs):>8.1f}"
            f"{statistics.median(r['p99_ms'] for r in rs):>8.1f}"
            f"{sum(r['conflict'] for r in rs):>7}{sum(r['errors'] for r in rs):>7}"
            f"{statistics.median(r.get('loadavg_1m', 0) for r in rs):>6.1f}"
        )
    ratio_lines = []
    for k in g:
        parts = [
            f"{name} {spread(per_round_ratios(rows, k, den))}"
            for name, den in comparators(k, set(g)).items()
        ]
        if parts:
            ratio_lines.append(f"{k[0]:<13}{k[1]:<9}{k[2]:>6}{k[3]:>6}  " + "   ".join(parts))
    if ratio_lines:
        lines += ["", "same-round ratios: median [min-max] over the rounds", *ratio_lines]
    return "\n".join(lines)


def save(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


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

    g = groups(rows)
    keys_main = max((k[2] for k in g), default=10_000)

    def med(k: Key, field: str) -> float:
        return statistics.median(r[field] for r in g[k])

    def ratio_target(name: str, num: Key, den: Key | None, bound: float) -> None:
        if num not in g or den is None or den not in g:
            add(name, None, "not measured")
            return
        rs = per_round_ratios(rows, num, den)
        add(
            name,
            statistics.median(rs) >= bound,
            f"median {spread(rs)}x over {len(rs)} round(s); "
            f"{med(num, 'rps'):.0f} vs {med(den, 'rps'):.0f}/s",
        )

    pg_renew: Key = ("postgresql", "renew", keys_main, 64)
    pg_acq: Key = ("postgresql", "acquire", keys_main, 64)
    txn = [k for k in g if k[:2] == ("etcd", "acquire") and k[3] == 64]
    ratio_target(
        f"postgresql renew >= 1.5x etcd keep-alive (64 conns, {keys_main} keys)",
        pg_renew,
        ("etcd", "renew", keys_main, 64),
        1.5,
    )
    ratio_target(
        "postgresql acquire >= 2x etcd create-if-absent txn (64 conns)",
        pg_acq,
        txn[0] if txn else None,
        2.0,
    )
    for k in (pg_renew, pg_acq):
        if k in g:
            errors = sum(r["errors"] for r in g[k])
            add(
                f"postgresql {k[1]}: zero errors, p99 < 25 ms (64 conns, {keys_main} keys)",
                errors == 0 and med(k, "p99_ms") < 25,
                f"errors {errors}, median p99 {med(k, 'p99_ms'):.1f} ms",
            )
    mem: Key = ("memory", "renew", keys_main, 64)
    bare = ("bare ASGI 1w", "renew", keys_main, 64)
    if bare not in g:
        bare = ("bare ASGI", "renew", keys_main, 64)
    ratio_target("memory:// renew >= 0.5 of bare ASGI (one worker, 64 conns)", mem, bare, 0.5)
    one_worker = results.get("settings", {}).get("workers") == 1
    for backend in ("file", "postgresql"):
        k = (backend, "renew", keys_main, 64)
        name = f"one-worker serve: {backend} renew p99 < 50 ms (64 conns)"
        if k in g and one_worker:
            add(name, med(k, "p99_ms") < 50, f"median p99 {med(k, 'p99_ms'):.1f} ms")
        else:
            add(name, None, "not measured (run with --workers 1)")
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
