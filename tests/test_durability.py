"""Durability (I3): SIGKILL the service at random points of a stream of acknowledged
acquires, renews and releases; after each restart every acknowledged state is there.

A client thread drives a stream of operations on a few keys and remembers the
last acknowledged record of each. The main thread kills the whole service
process group at a random moment (often in the middle of a request), waits
until the stream has noticed, restarts the service on the same backend and
reads every key back. A key must show exactly its last acknowledged state; the
one key whose request was in flight at the kill may instead show what that
request would have done (it may have been written but not answered). Runs on
every backend of ``BACKENDS`` but memory; ``LEADERELECTION_DURABILITY_BACKENDS``
(comma list, or ``all``) narrows a local run, and a name it does not know fails
the run with the list of valid names.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.backends import BACKENDS
from support.needs import missing
from support.procs import ServiceProcess, wait_until

KEYS = [f"durable-{i}" for i in range(4)]
KILLS = 4
# Fewer kills where the path is shared or slow to restart, to keep CI time small:
# the SQL code is PostgreSQL's, and the GCS emulator is not the real service.
SHORT_KILLS = {"sqlite": 1, "mysql": 1, "gcs": 1}
TTL = 600  # nothing expires during the test: held == not released


@dataclass
class InFlight:
    key: str
    op: str
    holder: str
    before: dict[str, Any] | None
    ttl: float | None = None


@dataclass
class Stream:
    """The writer: one request at a time; parks after a transport error."""

    url: str
    rng: random.Random
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: InFlight | None = None
    acknowledged: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    serial: int = 0

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as http:
                while not self.stop.is_set():
                    try:
                        self.step(http)
                    except httpx.TransportError:
                        self.stalled.set()
                        self.resume.wait()
                        self.resume.clear()
        except BaseException as exc:
            self.error = exc
            self.stalled.set()

    def step(self, http: httpx.Client) -> None:
        key = self.rng.choice(KEYS)
        cur = self.acked.get(key)
        self.serial += 1
        if cur is None or not cur["held"]:
            op, holder = "acquire", f"h{self.serial}"
            body: dict[str, Any] = {"holder": holder, "ttl": TTL}
        else:
            op = self.rng.choice(["renew", "release", "acquire"])
            holder = cur["holder"] if op != "acquire" else f"h{self.serial}"  # acquire: 409
            body = {"holder": holder, "fencing_token": cur["fencing_token"]}
            if op == "renew":
                body["ttl"] = TTL + self.rng.randint(1, 99)
            elif op == "acquire":
                body = {"holder": holder, "ttl": TTL}
        self.in_flight = InFlight(key, op, holder, cur, body.get("ttl"))
        r = http.post(f"/v1/leases/{key}/{op}", json=body)
        if r.status_code == 200:
            self.acked[key] = r.json()
        elif not (r.status_code == 409 and op == "acquire" and cur is not None):
            raise AssertionError(f"{op} {key}: {r.status_code} {r.text}")
        self.acknowledged += 1
        self.in_flight = None


def durable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("server_time",)}


def could_have_written(flight: InFlight, stored: dict[str, Any]) -> bool:
    """Whether ``stored`` is what the unanswered request would have made."""
    before = flight.before
    if flight.op == "acquire" and (before is None or not before["held"]):
        token = 1 if before is None else before["fencing_token"] + 1
        return (stored["holder"], stored["fencing_token"], stored["held"]) == (
            flight.holder,
            token,
            True,
        )
    if flight.op == "renew" and before is not None:
        same = {k: v for k, v in stored.items() if k not in ("renewed_at", "expires_at", "ttl")}
        was = {k: v for k, v in before.items() if k not in ("renewed_at", "expires_at", "ttl")}
        # a renew moves renewed_at on and sets the ttl it sent (expiry may come earlier)
        return (
            durable(same) == durable(was)
            and stored["renewed_at"] > before["renewed_at"]
            and stored["ttl"] == flight.ttl
        )
    if flight.op == "release" and before is not None:
        return (stored["holder"], stored["fencing_token"], stored["held"]) == (
            before["holder"],
            before["fencing_token"],
            False,
        )
    return False  # a refused acquire changes nothing


DURABILITY_ENV = "LEADERELECTION_DURABILITY_BACKENDS"
SERVICE_BACKENDS = [b for b in BACKENDS if b != "memory"]  # memory keeps nothing to survive


def wanted_backends(value: str | None) -> list[str]:
    """The backends ``LEADERELECTION_DURABILITY_BACKENDS`` names (all when unset or ``all``).

    An unknown name is an error, not an empty selection: pytest would skip an
    empty parameter set, even under ``CI=true``.
    """
    if value is None or value.strip() in ("", "all"):
        return list(SERVICE_BACKENDS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVICE_BACKENDS]
    if unknown:
        raise ValueError(
            f"{DURABILITY_ENV}={value!r}: unknown backend(s) {', '.join(unknown)}; "
            f"valid backends: {', '.join(SERVICE_BACKENDS)} (or all)"
        )
    return names


def test_unknown_durability_backend_names_fail() -> None:
    with pytest.raises(ValueError, match="valid backends: file, gcs, postgres, sqlite, mysql"):
        wanted_backends("pg")
    assert wanted_backends("file, sqlite") == ["file", "sqlite"]
    assert wanted_backends(None) == wanted_backends("all") == SERVICE_BACKENDS


@pytest.mark.parametrize("backend", SERVICE_BACKENDS)
def test_acknowledged_states_survive_sigkill(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    try:
        chosen = wanted_backends(os.environ.get(DURABILITY_ENV))
    except ValueError as exc:
        chosen, bad_name = [], str(exc)
    else:
        bad_name = ""
    if bad_name:
        pytest.fail(bad_name, pytrace=False)
    if backend not in chosen:
        missing(f"{backend} in {DURABILITY_ENV}", f"Unset {DURABILITY_ENV} or add {backend}.")
    url: str = request.getfixturevalue(f"{backend}_url")
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    kills = SHORT_KILLS.get(backend, KILLS)
    svc = ServiceProcess(url, log_path=tmp_path / "service.log")
    with svc:
        stream = Stream(svc.url, random.Random(seed + 1))
        writer = threading.Thread(target=stream.run, daemon=True)
        writer.start()
        ambiguous = 0
        try:
            for _ in range(kills):
                # Let at least a few requests through, then kill at a random instant.
                floor = stream.acknowledged + rng.randint(3, 30)
                wait_until(
                    lambda: stream.acknowledged >= floor or stream.error is not None,  # noqa: B023
                    60,
                    what="acknowledged requests",
                )
                time.sleep(rng.uniform(0.0, 0.25))  # the fault's timing, not a synchronisation
                svc.kill()
                assert stream.stalled.wait(30), "the stream did not notice the kill"
                assert stream.error is None, stream.error
                svc.start()
                flight = stream.in_flight
                with httpx.Client(base_url=svc.url, timeout=10.0) as http:
                    for key in KEYS:
                        acked = stream.acked.get(key)
                        r = http.get(f"/v1/leases/{key}")
                        if r.status_code == 404:
                            assert acked is None, f"seed {seed}: {key} lost {acked}"
                            continue
                        stored = r.json()
                        if acked is not None and durable(stored) == durable(acked):
                            continue
                        assert flight is not None and flight.key == key, (
                            f"seed {seed}: {key} is {stored}, acknowledged {acked}"
                        )
                        assert could_have_written(flight, stored), (
                            f"seed {seed}: {key} is {stored}; acknowledged {acked}; "
                            f"in flight {flight.op} by {flight.holder}"
                        )
                        ambiguous += 1
                        stream.acked[key] = stored  # the unanswered write did land
                stream.stalled.clear()
                stream.resume.set()
        finally:
            stream.stop.set()
            stream.resume.set()
            writer.join(30)
        assert stream.error is None, stream.error
    # Figures, not asserts: how much the run exercised.
    print(
        f"{backend}: {kills} kills, {stream.acknowledged} acknowledged requests, "
        f"{ambiguous} written-but-unanswered (seed {seed})"
    )
