"""Two service replicas on one GCS bucket whose clocks disagree (libfaketime).

On GCS each replica decides expiry by its own wall clock, so a replica whose
clock runs ahead sees a lease lapse early. ``clock_skew_allowance`` delays
every takeover by that many seconds; the rule is allowance >= the worst skew
between replicas (``docs/operations.md``). Here replica A runs on true time,
replica B ``skew`` seconds ahead (``support.faketime``), both with an
allowance of ``ALLOWANCE``:

- candidate X acquires through A and believes it leads until its own
  monotonic send time + ttl (the most any client may believe);
- candidate Y asks through B every 50 ms until granted, and believes it leads
  from the moment the grant arrives.

Within the allowance (skew 1.5 s < 2 s) Y's grant arrives after X's deadline:
no overlap. Beyond it (skew 4 s > 2 s) Y is granted while X still believes it
leads: the overlap the test expects, about skew - allowance long. Fencing
still holds there: Y's token is X's + 1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from support.faketime import skewed_env
from support.gcs import GcsEmulator
from support.procs import ServiceProcess

ALLOWANCE = 2.0
TTL = 3.0


def replicas(emu: GcsEmulator, skew: float, logs: Path) -> list[ServiceProcess]:
    bucket = emu.create_bucket()
    common = {**emu.env(), "LEADERELECTION_CLOCK_SKEW_ALLOWANCE": str(ALLOWANCE)}
    procs = [
        ServiceProcess(f"gs://{bucket}/leases", env=common, log_path=logs / "a.log"),
        ServiceProcess(
            f"gs://{bucket}/leases", env={**common, **skewed_env(skew)}, log_path=logs / "b.log"
        ),
    ]
    with ThreadPoolExecutor(2) as pool:  # start-up is mostly imports: overlap it
        list(pool.map(ServiceProcess.start, procs))
    return procs


@pytest.fixture
def skewed(
    request: pytest.FixtureRequest, gcs_emulator: GcsEmulator, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess, float]]:
    skew: float = request.param
    a, b = replicas(gcs_emulator, skew, tmp_path)
    try:
        yield a, b, skew
    finally:
        a.stop()
        b.stop()


def handoff(a: ServiceProcess, b: ServiceProcess) -> tuple[float, dict[str, int]]:
    """X acquires through A, Y polls through B: (Y's grant - X's deadline, tokens)."""
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        sent = time.monotonic()
        x = http.post(a.url + "/v1/leases/skewed/acquire", json={"holder": "x", "ttl": TTL})
        assert x.status_code == 200, x.text
        x_deadline = sent + TTL
        give_up = x_deadline + ALLOWANCE + 10
        while time.monotonic() < give_up:
            y = http.post(b.url + "/v1/leases/skewed/acquire", json={"holder": "y", "ttl": TTL})
            granted = time.monotonic()
            if y.status_code == 200:
                tokens = {"x": x.json()["fencing_token"], "y": y.json()["fencing_token"]}
                return granted - x_deadline, tokens
            assert y.status_code == 409, y.text
            time.sleep(0.05)  # the candidate's retry period
    raise AssertionError("Y was never granted the lapsed lease")


def clock_offset(http: httpx.Client, svc: ServiceProcess, key: str) -> tuple[float, float]:
    """(the replica's wall clock minus ours, the uncertainty: half the round trip)."""
    body = {"holder": "probe", "ttl": TTL}
    http.post(svc.url + f"/v1/leases/{key}-warm/acquire", json=body)  # first-call set-up
    before = time.time()
    r = http.post(svc.url + f"/v1/leases/{key}/acquire", json=body)
    after = time.time()
    assert r.status_code == 200, r.text
    stamp = datetime.fromisoformat(r.json()["acquired_at"]).timestamp()
    return stamp - (before + after) / 2, (after - before) / 2


def check_skew(a: ServiceProcess, b: ServiceProcess, skew: float) -> float:
    """B's wall clock really is ``skew`` ahead of A's (libfaketime took effect)."""
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        on_a, error_a = clock_offset(http, a, "probe-a")
        on_b, error_b = clock_offset(http, b, "probe-b")
    measured = on_b - on_a
    assert abs(measured - skew) < 0.2 + error_a + error_b, f"B runs {measured:.2f} s ahead"
    return measured


@pytest.mark.parametrize("skewed", [1.5], indirect=True)
def test_skew_within_the_allowance_never_overlaps(
    skewed: tuple[ServiceProcess, ServiceProcess, float],
) -> None:
    a, b, skew = skewed
    started = time.monotonic()
    measured = check_skew(a, b, skew)
    late, tokens = handoff(a, b)
    # Y's grant comes after X's deadline (by about allowance - skew): one leader.
    assert late >= 0, f"Y granted {-late:.2f} s before X's deadline"
    assert tokens["y"] == tokens["x"] + 1
    print(
        f"skew {measured:.2f} s within allowance {ALLOWANCE} s: Y granted {late:.2f} s after "
        f"X's deadline; {time.monotonic() - started:.1f} s"
    )


@pytest.mark.parametrize("skewed", [4.0], indirect=True)
def test_skew_beyond_the_allowance_overlaps(
    skewed: tuple[ServiceProcess, ServiceProcess, float],
) -> None:
    a, b, skew = skewed
    started = time.monotonic()
    measured = check_skew(a, b, skew)
    late, tokens = handoff(a, b)
    # Expected: Y is granted while X still believes it leads (one leader, I1,
    # is broken for about skew - allowance); fencing (I2) still tells them apart.
    assert late < 0, f"no overlap: Y granted {late:.2f} s after X's deadline"
    assert tokens["y"] == tokens["x"] + 1
    print(
        f"skew {measured:.2f} s beyond allowance {ALLOWANCE} s: Y granted {-late:.2f} s before "
        f"X's deadline (overlap); {time.monotonic() - started:.1f} s"
    )
