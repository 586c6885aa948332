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
