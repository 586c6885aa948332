"""One change, before and after, in the same run: two services side by side, interleaved.

Example::

    .venv/bin/python -m bench.ab --before HEAD~1 --backend memory --rounds 5 --duration 5

Checks out ``--before`` in a temporary git worktree and starts the service
from it and from this tree (same backend kind, fresh stores, one worker each
unless ``--workers``), then loads them in turn with the same wrk scenario,
round after round, and prints after ÷ before per round with its median. The
machine is shared and drifts: the two sides of each ratio are seconds apart,
so the ratio means something where two runs minutes apart would not.
Rejected: a switch in the service to turn the change off (a setting that
exists only for a benchmark).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs, targets, throughput
from bench.wrk import run_wrk


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="a git revision of this repository")
    p.add_argument("--backend", default="memory", choices=["file", "postgresql", "memory"])
    p.add_argument("--op", default="renew", choices=["renew", "acquire"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp, contextlib.ExitStack() as st:
        work = Path(tmp)
        old = work / "before"
        git = ["git", "-C", str(procs.REPO)]
        subprocess.run(
            [*git, "worktree", "add", "--detach", str(old), a.before],
            check=True,
            capture_output=True,
        )
        st.callback(subprocess.run, [*git, "worktree", "remove", "--force", str(old)], check=False)
        urls = {}
        for side, extra_env in (("before", {"PYTHONPATH": str(old / "service")}), ("after", {})):
            url, env = st.enter_context(targets.backend_url(a.backend, work, a.pg_dsn))
            svc = st.enter_context(
                procs.service(
                    url, workers=a.workers, log=work / f"{side}.log", env={**env, **extra_env}
                )
            )
            throughput.prepare(svc.port, a.keys)
            urls[side] = svc.url
        ratios, rps = [], {"before": [], "after": []}
        for r in range(a.rounds):
            got = {}
            for side, url in urls.items():
                res = run_wrk(
                    url,
                    op=a.op,
                    keys=a.keys,
                    connections=a.conns,
                    duration=a.duration,
                    env=throughput.SERVICE_ENV,
                )
                got[side] = res.rps
                rps[side].append(res.rps)
                print(f"  round {r + 1} {side:6} {throughput.brief(res)}", flush=True)
            ratios.append(got["after"] / got["before"] if got["before"] else 0.0)
    print(
        f"{a.backend} {a.op}, {a.workers} worker(s), {a.conns} conns, {a.keys} keys: "
        f"before {statistics.median(rps['before']):.0f}/s, "
        f"after {statistics.median(rps['after']):.0f}/s (medians); after ÷ before per round "
        f"{', '.join(f'{x:.2f}' for x in ratios)}: median {statistics.median(ratios):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
