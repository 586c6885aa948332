"""C1, faults: a leader steps down before its server-side expiry, and permanent errors end it.

Each scenario runs on each language's adapter alone (the fault is the
service's or the network's, not another candidate's):

- the service freezes (SIGSTOP of its process group): the leader's renew
  hangs, and the leader reports ``ousting`` before the expiry the service
  had stored when it froze (read from the file backend's record, since the
  frozen service cannot answer);
- the leader is cut off (its ``TcpProxy`` turns into a black hole: no reset,
  requests hang): the same, with the expiry read from the running service;
- a permanent error (a term above the service's ``ttl_max``: 422; a
  read-only token: 403): one ``error`` line, never ``elected``, and the
  process exits with the status its adapter documents;
- flags that cannot work: exit status 2, the rule on stderr, nothing on stdout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import datetime

import httpx
import pytest

from conformance.adapters import ADAPTERS, AdapterProcess, Timing
from conformance.conftest import LANGUAGES, TIMING, Cast
from leaderelection_service.backends.file.encoding import decode
from leaderelection_service.backends.file.names import RECORD_SUFFIX, RECORDS_DIR, file_name
from support.procs import wait_until

SLACK = 1.5
"""Scheduling and request latency on a loaded machine; each test prints what it measured."""
WAIT = 15.0

pytestmark = pytest.mark.parametrize("cast", LANGUAGES, indirect=True)


def seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def lease(cast: Cast, key: str) -> dict[str, str]:
    """The key's record, straight from the service (never through an adapter's proxy)."""
    url = f"{cast.secured.url}/v1/leases/{key}-{cast.name}"
    answer: dict[str, str] = httpx.get(
        url, headers=cast.secured.tokens.header("reader"), timeout=10
    ).json()
    return answer


def stored_expiry(cast: Cast, key: str) -> float:
    """The expiry the service stored for the key, read from its file backend's record."""
    path = cast.secured.data / RECORDS_DIR / (file_name(f"{key}-{cast.name}") + RECORD_SUFFIX)
    fields, _ = decode(path.read_bytes())
    return seconds(fields["expires_at"])


def elected_and_renewed(cast: Cast, key: str) -> AdapterProcess:
    """One adapter process leading ``key``, after at least one renewal."""
    (proc,) = cast.start(key, count=1)
    wait_until(lambda: proc.leading, WAIT, what=f"{proc.identity} elected; {proc.events}")

    def renewed() -> bool:
        record = lease(cast, key)
        return record["holder"] == proc.identity and record["renewed_at"] > record["acquired_at"]

    wait_until(renewed, WAIT, what="a renewal")
    return proc


def assert_stepped_down_in_time(
    cast: Cast, proc: AdapterProcess, fault_at: float, expiry: Callable[[], float], what: str
) -> None:
    """``proc`` reported ``ousting`` soon after the fault, and before ``expiry()``."""
    wait_until(lambda: proc.of("ousting"), WAIT, what=f"ousting after {what}; {proc.events}")
    ousting = proc.of("ousting")[0]
    expires = expiry()
    ahead, after = expires - ousting["time"], ousting["time"] - fault_at
    print(
        f"\n[{cast.name}] {what}: ousting {after:.2f} s after it, {ahead:.2f} s before the "
        f"service's expiry (term {TIMING.term} s, margin {TIMING.term / 10} s)"
    )
    assert ahead > 0, "the leader still led after the service let the lease expire"
    # The deadline is at most term - margin after the last renewal sent before the fault.
    assert after <= TIMING.term + SLACK
    assert ousting["fencing_token"] == proc.of("elected")[0]["fencing_token"]


def test_leader_steps_down_before_expiry_when_the_service_freezes(cast: Cast) -> None:
    proc = elected_and_renewed(cast, "frozen")
    service = cast.secured.service
    service.pause()
    frozen_at = time.time()
    try:
        expires = stored_expiry(cast, "frozen")  # what the service will go by when it wakes
        assert_stepped_down_in_time(
            cast, proc, frozen_at, lambda: expires, "SIGSTOP of the service"
        )
        assert len(proc.of("elected")) == 1  # nothing granted while frozen
    finally:
        service.resume()


def test_leader_steps_down_before_expiry_when_cut_off(cast: Cast) -> None:
    proc = elected_and_renewed(cast, "cut")
    proc.proxy.black_hole()
    cut_at = time.time()

    def expiry() -> float:
        record = lease(cast, "cut")  # the service, reached directly, still has the term
        assert record["holder"] == proc.identity
        return seconds(record["expires_at"])

    assert_stepped_down_in_time(cast, proc, cut_at, expiry, "black hole")
    assert len(proc.of("elected")) == 1


@pytest.mark.parametrize("cause", ["term above ttl_max", "read-only token"])
def test_a_permanent_error_ends_the_election(cast: Cast, cause: str) -> None:
    adapter = ADAPTERS[cast.name]
    if cause == "term above ttl_max":  # the service's default ttl_max: 3600 s
        timing, token, code = Timing(term=7200, renew=5, retry=0.5), None, "invalid"
    else:
        timing, token, code = TIMING, cast.secured.tokens.tokens["reader"], "forbidden"
    (proc,) = cast.start(f"refused-{cause[:4]}", count=1, token=token, timing=timing)
    status = proc.finish(timeout=WAIT)
    errors = proc.of("error")
    assert status == adapter.refused_status, (status, proc.events)
    assert len(errors) == 1, proc.events
    assert code in errors[0]["message"].lower(), errors
    assert proc.of("elected") == []


def test_bad_flags_exit_2_and_print_nothing(cast: Cast) -> None:
    """A timing that cannot work (renew 5 s, the default, above term 3 s) is refused, named."""
    argv = cast.builds.argv(ADAPTERS[cast.name])
    done = subprocess.run(
        [*argv, "--server", "http://127.0.0.1:1", "--key", "job", "--term", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == ""
    assert "renew < term" in done.stderr, done.stderr
