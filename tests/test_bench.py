"""The benchmark command still runs: its quickest form, one section, no timing asserts.

The figures themselves belong to ``bench/run.py`` and docs/benchmarks.md; this
only keeps the script from rotting (a changed route, body or CLI flag breaks
it here first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from support.needs import missing
from support.procs import REPO


def test_bench_throughput_section_runs_on_the_file_backend(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        missing("wrk (the benchmark's load generator)", "Install it: apt-get install wrk")
    cmd = [
        sys.executable, str(REPO / "bench" / "run.py"), "--sections", "throughput",
        "--backends", "file", "--conns", "2", "--keys", "50", "--duration", "1",
        "--workers", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "req/s" in proc.stdout  # the table was printed
    (result,) = tmp_path.glob("bench-*.json")
    rows = json.loads(result.read_text())["throughput"]
    assert {(r["target"], r["op"]) for r in rows} == {("file", "acquire"), ("file", "renew")}
    for r in rows:
        # distinct keys, each renewed by its holder with its token: every answer a 200
        assert r["ok"] == r["requests"] > 0, r
        assert r["errors"] == r["conflict"] == 0, r


def test_bench_attack_runs_one_attack(tmp_path: Path) -> None:
    out = tmp_path / "attack.json"
    cmd = [sys.executable, str(REPO / "bench" / "attack.py"), "--attacks", "slowloris",
           "--duration", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "p99 ms" in proc.stdout  # the table was printed
    rows = json.loads(out.read_text())
    assert [(r["attack"], r["attackers"]) for r in rows] == [
        ("none", 0),
        ("slowloris", 1),
        ("slowloris", 4),
    ]
    assert all(r["renewals"] > 0 for r in rows), rows
    assert rows[1]["attack_ops"] > 0 and rows[2]["attack_ops"] > 0, rows  # the attack ran


def test_bench_report_judges_a_ratio_on_its_median_over_rounds() -> None:
    from bench import report

    def row(target: str, op: str, rnd: int, rps: float) -> dict[str, object]:
        return {"target": target, "op": op, "keys": 10_000, "conns": 64, "round": rnd,
                "rps": rps, "p50_ms": 1.0, "p99_ms": 10.0, "errors": 0, "conflict": 0}  # fmt: skip

    # round 2 is an outlier (the machine slowed down for the service only): one bad
    # round must not fail the target, and each ratio pairs rows of the same round
    service = [1600.0, 500.0, 1700.0]
    etcd = [1000.0, 1000.0, 1100.0]
    rows = [row("postgresql", "renew", r + 1, s) for r, s in enumerate(service)]
    rows += [row("etcd", "renew", r + 1, e) for r, e in enumerate(etcd)]
    key = ("postgresql", "renew", 10_000, 64)
    ratios = report.per_round_ratios(rows, key, ("etcd", "renew", 10_000, 64))
    assert sorted(ratios) == sorted(s / e for s, e in zip(service, etcd, strict=True))
    assert report.spread(ratios) == "1.55 [0.50-1.60]"
    checks = {c["target"]: c for c in report.check_targets({"throughput": rows})}
    (renew,) = [c for n, c in checks.items() if n.startswith("postgresql renew >= 1.5x")]
    assert renew["verdict"] == "PASS", renew
    rows[0]["rps"] = 1400.0  # now the median round is below 1.5x
    checks = {c["target"]: c for c in report.check_targets({"throughput": rows})}
    (renew,) = [c for n, c in checks.items() if n.startswith("postgresql renew >= 1.5x")]
    assert renew["verdict"] == "FAIL", renew
