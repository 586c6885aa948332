"""Drive ``wrk`` with ``lua/lease.lua`` and read its JSON summary.

Example::

    res = run_wrk("http://127.0.0.1:8080", op="renew", keys=10_000, connections=64,
                  duration=10, env={"BENCH_TOKEN": "1"})
    res.rps, res.p99_ms, res.errors

wrk is the load generator because it is cheap in CPU: the machine has two
cores shared by the load, the service and its database, and a Python client
(httpx) tops out near 150 requests/s (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua" / "lease.lua"


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    ok: int
    conflict: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def run_wrk(
    url: str,
    *,
    op: str,
    keys: int,
    connections: int,
    duration: float,
    env: dict[str, str] | None = None,
    threads: int | None = None,
    rate_per_thread: float = 0.0,
    timeout_s: int = 10,
) -> WrkResult:
    """One wrk run; ``conflict`` counts 409s, ``errors`` every other failure."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    threads = threads or min(2, connections)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        out = Path(tmp) / "summary.json"
        run_env = {
            **os.environ,
            "BENCH_OP": op,
            "BENCH_KEYS": str(keys),
            "BENCH_THREADS": str(threads),
            "BENCH_RATE": str(rate_per_thread),
            "BENCH_OUT": str(out),
            **(env or {}),
        }
        cmd = [
            exe,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(LUA),
            url,
        ]
        proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        s = json.loads(out.read_text())
    socket_errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    return WrkResult(
        requests=s["requests"],
        seconds=s["duration_us"] / 1e6,
        ok=s["ok"],
        conflict=s["conflict"],
        errors=s["other_status"] + socket_errors,
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        max_ms=s["max_us"] / 1000,
    )
