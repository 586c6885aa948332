"""One error vocabulary: each exception carries the contract's code and status.

    LeaseError                      internal            500
     ├── LeaseHeld                  lease_held          409
     ├── LeaseLost                  lease_lost          409
     ├── LimitMismatch              limit_mismatch      409
     ├── LeaseNotFound              not_found           404
     ├── InvalidRequest             invalid_request     422
     ├── Unauthorized               unauthorized        401
     ├── Forbidden                  forbidden           403
     ├── TooManyRequests            too_many_requests   429 (+ Retry-After)
     └── BackendUnavailable         backend_unavailable 503 (+ Retry-After)

The HTTP layer maps these to ``{"error", "message", "lease"}`` in one handler;
a ``BackendUnavailable`` answers the kind of failure only (``failures``).
``WriteConflict`` is not an API error: a store raises it when a
compare-and-set lost a race, and the lease rules read again and decide anew.
"""

from __future__ import annotations

from typing import ClassVar

from leaderelection_service.records import LeaseView


class LeaseError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, lease: LeaseView | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lease = lease


class LeaseHeld(LeaseError):
    code = "lease_held"
    status = 409


class LeaseLost(LeaseError):
    code = "lease_lost"
    status = 409


class LimitMismatch(LeaseError):
    """An acquire asked a semaphore key for another limit than the one it holds."""

    code = "limit_mismatch"
    status = 409


class LeaseNotFound(LeaseError):
    code = "not_found"
    status = 404


class InvalidRequest(LeaseError):
    code = "invalid_request"
    status = 422


class Unauthorized(LeaseError):
    code = "unauthorized"
    status = 401


class Forbidden(LeaseError):
    code = "forbidden"
    status = 403


class TooManyRequests(LeaseError):
    """The caller holds as many of a limited resource as one caller may (watch streams)."""

    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(LeaseError):
    code = "backend_unavailable"
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind
        """What the answer says. None: ``failures.kind_of`` names the kind from
        the backend and the cause, and ``message`` (a host, a path) stays in
        the log."""


class WriteConflict(Exception):
    """A compare-and-set found another version than the one expected."""
