"""Every error the client raises, in one tree.

Example::

    try:
        lease = client.acquire("cron", "host-a", ttl=10)
    except LeaseHeld as exc:
        print("held by", exc.lease.holder if exc.lease else "?")
    except TransportError as exc:
        print("service unreachable:", exc.__cause__)

The tree (the service's error code and HTTP status on the right)::

    LeaseError
     ├── TransportError                 no answer: connect, read, write failed
     │    └── RequestTimeout            no answer within the timeout
     └── ServiceError                   the service answered with an error
          ├── LeaseHeld                 lease_held          409
          ├── LeaseLost                 lease_lost          409
          ├── LimitMismatch             limit_mismatch      409
          ├── LeaseNotFound             not_found           404
          ├── InvalidRequest            invalid_request     422 (also raised locally
          │                                                      for a bad key)
          ├── Unauthorized              unauthorized        401
          ├── Forbidden                 forbidden           403
          ├── TooManyRequests           too_many_requests   429 (``retry_after``)
          ├── BackendUnavailable        backend_unavailable 503 (``retry_after``)
          └── InternalError             internal            500, or any answer
                                                            outside the contract

A ``ServiceError`` carries ``code``, ``status``, ``message`` and ``lease``, the
server's current record where it sent one (a ``LeaseHeld`` names the holder).
Transport errors are raised ``from`` the ``httpx`` exception that caused them.
"""

from __future__ import annotations

from typing import ClassVar

from leaderelection.lease import Lease


class LeaseError(Exception):
    """The root of every error this package raises."""


class TransportError(LeaseError):
    """The request got no answer (connection refused or reset, DNS, protocol)."""


class RequestTimeout(TransportError):
    """The request got no answer within its timeout."""


class ServiceError(LeaseError):
    """The service answered with an error body ``{"error", "message", "lease"}``."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, status: int, lease: Lease | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.lease = lease

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


class LeaseHeld(ServiceError):
    """Another holder has the lease; ``lease`` is its current record."""

    code = "lease_held"


class LeaseLost(ServiceError):
    """This holder and token no longer hold the lease; ``lease`` says who does."""

    code = "lease_lost"


class LimitMismatch(ServiceError):
    """The key is held with another ``limit`` (a semaphore); only an admin token may
    change it. ``lease`` is the key's record (its ``limit`` and ``holders``)."""

    code = "limit_mismatch"


class LeaseNotFound(ServiceError):
    """The key was never acquired."""

    code = "not_found"


class InvalidRequest(ServiceError):
    """A bad key, holder, ttl or token: the request changed nothing."""

    code = "invalid_request"


class Unauthorized(ServiceError):
    """No valid API token was sent."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """The token may not do this (for example a read-only token)."""

    code = "forbidden"


class TooManyRequests(ServiceError):
    """This caller holds as many watch streams as one caller may; retry after ``retry_after``."""

    code = "too_many_requests"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        lease: Lease | None = None,
        retry_after: float = 5.0,
    ) -> None:
        super().__init__(message, status=status, lease=lease)
        self.retry_after = retry_after


class BackendUnavailable(ServiceError):
    """The service cannot reach its backend; try again after ``retry_after`` seconds."""

    code = "backend_unavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        lease: Lease | None = None,
        retry_after: float = 1.0,
    ) -> None:
        super().__init__(message, status=status, lease=lease)
        self.retry_after = retry_after


class InternalError(ServiceError):
    """The service failed (500), or answered something outside the contract."""

    code = "internal"


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        LeaseHeld,
        LeaseLost,
        LimitMismatch,
        LeaseNotFound,
        InvalidRequest,
        Unauthorized,
        Forbidden,
        TooManyRequests,
        BackendUnavailable,
        InternalError,
    )
}
ERRORS_BY_STATUS: dict[int, type[ServiceError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: LeaseNotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    429: TooManyRequests,
    503: BackendUnavailable,
}

TRANSIENT: tuple[type[LeaseError], ...] = (
    TransportError,
    BackendUnavailable,
    TooManyRequests,
    InternalError,
)
"""Errors worth retrying: the next attempt may well succeed (a stream slot frees up)."""

PERMANENT: tuple[type[LeaseError], ...] = (InvalidRequest, Unauthorized, Forbidden)
"""Errors no retry can fix: the same request gets the same answer until someone
changes the caller's token, role, scope or arguments. An elector that gets one
ends its election (``on_error`` once, then as after ``cancel()``)."""
