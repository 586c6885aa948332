"""What a ``backend_unavailable`` answer says, and what the log keeps.

Example::

    failures = Failures("postgresql+psycopg://lease:***@db:5432/leases")
    failures.public(exc)  # "the database cannot be reached" (and the log says
                          # 'connection to server at "db", port 5432 failed')

A backend's error text names what it failed on: a host and port, a data
directory, a bucket. Any token holder gets the 503 answer, so the answer names
only the kind of failure; the detail goes to the service log at warning, the
first time a kind is seen and then at most once per ``LOG_INTERVAL`` with the
number of failures in between, so an outage of a busy service does not flood
its log. (No token ever reaches the detail: tokens stay in the auth layer.)

This is the one place where a backend's failure becomes an answer's message,
so no backend has to get its messages right: each raises
``BackendUnavailable`` with its detail and the error it caught as the cause.
A failure that knows its kind better than its cause can tell (a contended
lease, too many watch streams, a closed backend, a damaged record) names it
with ``kind=``, which is then the answer.

The kind is read from the backend's URL scheme and the chain of causes: an
``OSError``'s errno, a timeout anywhere in the chain, a few class names.
Rejected: ``isinstance`` against each driver's exception classes, which would
import psycopg and google-cloud into every service, also a file-only one.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from leaderelection_service.lease_errors import BackendUnavailable

log = logging.getLogger("leaderelection")

LOG_INTERVAL = 60.0
"""Seconds between two log lines of the same kind of failure."""

_MAX_KINDS = 64
_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_GONE = {errno.ENOENT, errno.ESTALE, errno.ENOTDIR}
_TIMEOUT_NAMES = ("Timeout", "QueryCanceled", "DeadlineExceeded", "RetryError")
_ROLLED_BACK_NAMES = ("RolledBack", "TransactionRollback", "SerializationFailure", "Deadlock")
_DATABASES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__context__, e.__cause__]


def _named(e: BaseException, names: tuple[str, ...]) -> bool:
    return any(n in cls.__name__ for cls in type(e).__mro__ for n in names)


def _storage_kind(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, OSError):
            if e.errno in _FULL:
                return "the storage directory is full"
            if e.errno in _READ_ONLY:
                return "the storage directory cannot be written"
            if e.errno in _GONE:
                return "the storage directory is missing"
            if e.errno == errno.EIO:
                return "the storage device reported an I/O error"
    return "the storage directory cannot be read or written"


def _database_kind(chain: list[BaseException]) -> str:
    if any(isinstance(e, TimeoutError) or _named(e, _TIMEOUT_NAMES) for e in chain):
        return "the database did not answer in time"
    if any(_named(e, _ROLLED_BACK_NAMES) for e in chain):
        return "the database rolled the statement back; retry"
    if any(_named(e, ("SchemaMissing",)) for e in chain):
        return "the database has no lease table of this version"
    if any(_named(e, ("ProgrammingError",)) for e in chain):
        return "the database refused the statement"
    return "the database cannot be reached"


def _gcs_kind(chain: list[BaseException]) -> str:
    if any(isinstance(e, TimeoutError) or _named(e, _TIMEOUT_NAMES) for e in chain):
        return "GCS did not answer in time"
    if any(_named(e, ("NotFound",)) for e in chain):
        return "the GCS bucket does not exist"
    if any(_named(e, ("GoogleAuthError", "Forbidden", "Unauthorized")) for e in chain):
        return "GCS refused the service's credentials"
    return "GCS cannot be reached"


def kind_of(exc: BackendUnavailable, backend: str) -> str:
    """The kind of ``exc`` for a backend whose description (URL) is ``backend``."""
    if exc.kind is not None:
        return exc.kind
    chain = list(_chain(exc))
    scheme = backend.partition(":")[0].partition("+")[0].lower()
    if scheme == "file":
        return _storage_kind(chain)
    if scheme in _DATABASES:
        return _database_kind(chain)
    if scheme == "gs":
        return _gcs_kind(chain)
    return "the backend is unavailable"


@dataclass
class _Seen:
    logged_at: float
    since: int = 0


class Failures:
    """Turns backend failures into public messages and rate-limited log lines.

    ``backend`` is the backend's description with no password (``redact``):
    it names the backend in the log lines.
    """

    def __init__(
        self,
        backend: str,
        *,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._interval = interval
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def public(self, exc: BackendUnavailable, where: str = "backend unavailable") -> str:
        """The answer's message; logs the detail (rate-limited per kind)."""
        kind = kind_of(exc, self._backend)
        self._log(kind, where, exc.message)
        return kind

    def _log(self, kind: str, where: str, detail: str) -> None:
        now = self._clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen.logged_at < self._interval:
            seen.since += 1
            return
        more = f" ({seen.since} more since the last line)" if seen and seen.since else ""
        log.warning("%s: %s: %s (backend %s)%s", where, kind, detail, self._backend, more)
        if len(self._seen) >= _MAX_KINDS:  # kinds are few; never let them grow a table
            self._seen.clear()
        self._seen[kind] = _Seen(now)
