"""The rules of backend failures, apart from I/O: which kind an answer names,
how often the log says it, and how often ``/readyz`` really asks the backend.

The real outages (a stopped database, a stopped GCS emulator, a removed,
read-only or full directory) are in test_failure_messages.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

import pytest

from leaderelection_service.failures import Failures, kind_of
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.readiness import Readiness


def caused_by(cause: BaseException, detail: str = "detail /var/lib/x 10.0.0.1:5432") -> Exception:
    exc = BackendUnavailable(detail)
    exc.__cause__ = cause
    return exc


class Timeout(Exception):  # stands for requests.ReadTimeout, sqlalchemy's TimeoutError
    pass


class ProgrammingError(Exception):
    pass


class DeadlockDetected(Exception):  # psycopg.errors' name for SQLSTATE 40P01
    pass


@pytest.mark.parametrize(
    ("backend", "cause", "kind"),
    [
        ("file:///d", OSError(errno.ENOSPC, "full"), "the storage directory is full"),
        ("file:///d", OSError(errno.EDQUOT, "quota"), "the storage directory is full"),
        ("file:///d", OSError(errno.EROFS, "ro"), "the storage directory cannot be written"),
        ("file:///d", OSError(errno.EACCES, "no"), "the storage directory cannot be written"),
        ("file:///d", FileNotFoundError(errno.ENOENT, "gone"), "the storage directory is missing"),
        ("file:///d", OSError(errno.EIO, "io"), "the storage device reported an I/O error"),
        ("file:///d", ValueError("?"), "the storage directory cannot be read or written"),
        ("postgresql+psycopg://u:***@h:1/d", OSError("refused"), "the database cannot be reached"),
        ("postgresql://h/d", TimeoutError(), "the database did not answer in time"),
        ("mysql+pymysql://h/d", Timeout(), "the database did not answer in time"),
        ("sqlite:///x.db", ProgrammingError(), "the database refused the statement"),
        (
            "postgresql://h/d",
            DeadlockDetected(),
            "the database rolled the statement back; retry",
        ),
        ("gs://bucket/p", Timeout(), "GCS did not answer in time"),
        ("gs://bucket/p", ConnectionError(), "GCS cannot be reached"),
        ("memory://", RuntimeError(), "the backend is unavailable"),
    ],
)
def test_the_kind_comes_from_the_backend_and_the_cause(
    backend: str, cause: BaseException, kind: str
) -> None:
    exc = caused_by(cause)
    assert isinstance(exc, BackendUnavailable)
    assert kind_of(exc, backend) == kind


def test_a_cause_deep_in_the_chain_counts() -> None:
    inner = OSError(errno.ENOSPC, "No space left on device")
    middle = RuntimeError("while writing")
    middle.__context__ = inner
    exc = caused_by(middle)
    assert isinstance(exc, BackendUnavailable)
    assert kind_of(exc, "file:///d") == "the storage directory is full"


def test_a_named_kind_wins() -> None:
    exc = BackendUnavailable("lease 'k' is contended", kind="the lease is contended")
    exc.__cause__ = OSError(errno.ENOSPC, "full")
    assert kind_of(exc, "file:///d") == "the lease is contended"


def test_the_log_says_each_kind_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    failures = Failures("file:///var/lib/le", interval=60.0, clock=lambda: now[0])
    full = caused_by(OSError(errno.ENOSPC, "No space left on device"), "cannot write: no space")
    gone = caused_by(OSError(errno.ENOENT, "No such file"), "/var/lib/le/leases: missing")
    with caplog.at_level(logging.WARNING, logger="leaderelection"):
        for _ in range(5):
            assert failures.public(full) == "the storage directory is full"  # type: ignore[arg-type]
        assert failures.public(gone) == "the storage directory is missing"  # type: ignore[arg-type]
        now[0] += 59.0
        failures.public(full)  # type: ignore[arg-type]
        now[0] += 2.0
        failures.public(full)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "cannot write: no space" in lines[0] and "file:///var/lib/le" in lines[0]
    assert "/var/lib/le/leases: missing" in lines[1]
    assert lines[2].endswith("(5 more since the last line)")


class CountingBackend:
    """Counts pings; fails them while ``failing`` (a unit test of the cache)."""

    def __init__(self) -> None:
        self.pings = 0
        self.failing = False
        self.gate = asyncio.Event()

    async def ping(self) -> None:
        self.pings += 1
        await self.gate.wait()
        if self.failing:
            raise BackendUnavailable("cannot write /d/probe", retry_after=3.0)


async def test_readiness_asks_the_backend_once_per_ttl_however_many_probe() -> None:
    now = [0.0]
    backend = CountingBackend()
    readiness = Readiness(backend, ttl=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    probes = [asyncio.ensure_future(readiness.check()) for _ in range(50)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert await asyncio.gather(*probes) == [None] * 50
    assert backend.pings == 1
    now[0] = 0.9
    assert await readiness.check() is None and backend.pings == 1
    backend.failing = True
    now[0] = 1.0
    failure = await readiness.check()
    assert isinstance(failure, BackendUnavailable) and failure.retry_after == 3.0
    assert backend.pings == 2
    now[0] = 1.5
    assert await readiness.check() is failure and backend.pings == 2
    backend.failing = False
    now[0] = 2.1
    assert await readiness.check() is None and backend.pings == 3


async def test_a_probe_that_gives_up_does_not_cancel_the_shared_check() -> None:
    backend = CountingBackend()
    readiness = Readiness(backend, ttl=1.0)  # type: ignore[arg-type]
    impatient = asyncio.ensure_future(readiness.check())
    await asyncio.sleep(0)
    patient = asyncio.ensure_future(readiness.check())
    await asyncio.sleep(0)
    impatient.cancel()
    backend.gate.set()
    assert await patient is None
    assert backend.pings == 1


def test_the_probe_file_is_named_outside_the_key_space() -> None:
    from leaderelection_service.backends.file.names import key_of
    from leaderelection_service.backends.file.store import PROBE_PREFIX

    assert key_of(f"{PROBE_PREFIX}{os.getpid()}") is None
