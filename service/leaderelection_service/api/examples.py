"""The examples of openapi.yaml, made by the service's own rules on a fixed clock.

Example::

    LEASE                      # the record a renew answered: the wire's JSON object
    ERRORS["lease_held"]       # {"error": "lease_held", "message": ..., "lease": {...}}

One short story of the key ``cron-nightly`` is played through the lease rules
(``lease_rules.decide_*``), the refusals (``refusals``), the record's wire form
(``LeaseRecord.to_public``) and the watch events (``events.describe``); every
example is read off it. So an example is what the service really answers
(times in RFC 3339 with microseconds and ``Z``, tokens that agree between a
request and its answer), and it changes when the wire does. Hand-written JSON
was the alternative: it drifts from the wire unnoticed. Only the texts of
errors that need a request or a deployment to arise (a token, a body, a
backend outage) are written here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from leaderelection_service import refusals, semaphore_rules
from leaderelection_service.events import describe
from leaderelection_service.lease_rules import (
    decide_acquire,
    decide_release,
    decide_renew,
    decide_revoke,
    decide_transfer,
)
from leaderelection_service.records import (
    HISTORY_LIMIT,
    KEY_PATTERN,
    PREFIX_PATTERN,
    LeaseRecord,
    LeaseView,
)

KEY = "cron-nightly"
HOLDER = "host-a-4242-9f1c"
OTHER = "host-b-0731-2d4e"
TTL = 10.0
_T0 = datetime(2026, 11, 27, 9, 20, 16, 123456, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return _T0 + timedelta(seconds=seconds)


def _story() -> tuple[LeaseRecord, LeaseRecord, datetime]:
    """OTHER leads and releases; HOLDER acquires, then renews: (acquired, renewed, now)."""
    first = decide_acquire(None, key=KEY, holder=OTHER, ttl=TTL, now=_at(0))
    released = decide_release(first, key=KEY, holder=OTHER, fencing_token=1, now=_at(42.5))
    assert released is not None
    acquired = decide_acquire(released, key=KEY, holder=HOLDER, ttl=TTL, now=_at(43.0))
    renewed = decide_renew(
        acquired,
        key=KEY,
        holder=HOLDER,
        fencing_token=acquired.fencing_token,
        ttl=None,
        now=_at(46.25),
    )
    return acquired, renewed, _at(46.250871)


_ACQUIRED, _RENEWED, _NOW = _story()
TOKEN = _RENEWED.fencing_token

LEASE = LeaseView(_RENEWED, _NOW).to_public()
"""What renew and get answer: HOLDER holds the key."""
ACQUIRED = LeaseView(_ACQUIRED, _ACQUIRED.acquired_at).to_public()
RELEASED = LeaseView(_RENEWED.released_at(_at(50.0)), _at(50.0)).to_public()
_REVOKED = decide_revoke(_RENEWED, key=KEY, now=_at(48.0))
assert _REVOKED is not None
REVOKED = LeaseView(_REVOKED, _at(48.0)).to_public()
"""What revoke answers: an operator ended HOLDER's term."""
_TRANSFERRED = decide_transfer(
    _RENEWED, key=KEY, to=OTHER, holder=HOLDER, fencing_token=TOKEN, now=_at(49.0)
)
assert _TRANSFERRED is not None
TRANSFERRED = LeaseView(_TRANSFERRED, _at(49.0)).to_public()
"""What the holder's transfer answers: its term ended, OTHER named its successor."""


def _semaphore() -> LeaseRecord:
    """Workers ``w-1`` and ``w-2`` hold two of the three slots of ``SEMAPHORE_KEY``."""
    rec = None
    for i, holder in enumerate(("w-1", "w-2")):
        rec = semaphore_rules.decide_acquire(
            rec, key=SEMAPHORE_KEY, holder=holder, ttl=TTL, now=_at(i), limit=3
        )
    assert rec is not None
    return rec


SEMAPHORE_KEY = "jobs-heavy"
SEMAPHORE = LeaseView(_semaphore(), _at(1.5)).to_public()
"""What a semaphore key (limit 3) answers the acquire of its second holder."""

ACQUIRE_BODY = {"holder": HOLDER, "ttl": TTL}
RENEW_BODY = {"holder": HOLDER, "fencing_token": TOKEN, "ttl": TTL}
RELEASE_BODY = {"holder": HOLDER, "fencing_token": TOKEN}
TRANSFER_BODY = {"holder": HOLDER, "fencing_token": TOKEN, "to": OTHER}
ADMIN_TRANSFER_BODY = {"to": OTHER}

PREFIX = "cron-"
CURSOR = base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("=")
"""The cursor after ``cron-nightly`` (``api.leases.encode_cursor``'s form)."""
LEASE_LIST = {"leases": [LEASE], "next_cursor": CURSOR}

EVENT = describe(LeaseView(_ACQUIRED, _ACQUIRED.acquired_at), replay=False)
LAST_EVENT_ID = EVENT.id
LEASE_EVENT = EVENT.data()
STREAM = f"event: {EVENT.type}\nid: {EVENT.id}\ndata: {EVENT.json()}\n\n"

HISTORY = {
    "key": KEY,
    "limit": HISTORY_LIMIT,
    "terms": [t.to_public() for t in _RENEWED.history],
}

HEALTH = {"status": "ok", "version": "0.1.0"}
READY = {"status": "ready", "backend": "postgresql"}
METRICS = (
    "# HELP leaderelection_leases_held Leases held now.\n"
    "# TYPE leaderelection_leases_held gauge\n"
    "leaderelection_leases_held 1.0\n"
)


def _error(exc: Any) -> dict[str, Any]:
    lease = exc.lease.to_public() if exc.lease is not None else None
    return {"error": exc.code, "message": exc.message, "lease": lease}


def _plain(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message, "lease": None}


ERRORS: dict[str, dict[str, Any]] = {
    "lease_held": _error(refusals.held(KEY, LeaseView(_RENEWED, _NOW))),
    "lease_lost": _error(refusals.lost(KEY, LeaseView(_RENEWED, _NOW), OTHER, 1)),
    "limit_mismatch": _error(
        refusals.limit_mismatch(SEMAPHORE_KEY, LeaseView(_semaphore(), _at(1.5)), 1)
    ),
    "not_found": _error(refusals.never_acquired("cron-weekly")),
    "invalid_body": _plain("invalid_request", "ttl: must be between 0.5 and 3600 seconds, got 0.1"),
    "invalid_key": _plain(
        "invalid_request", f"path.key: String should match pattern '{KEY_PATTERN}'"
    ),
    "invalid_prefix": _plain(
        "invalid_request", f"query.prefix: String should match pattern '{PREFIX_PATTERN}'"
    ),
    "invalid_last_event_id": _plain(
        "invalid_request", "Last-Event-ID: must be KEY:VERSION as sent in an event's id"
    ),
    "body_too_large": _plain("invalid_request", "request body larger than 16384 bytes"),
    "unauthorized": _plain("unauthorized", "missing API token: send Authorization: Bearer <token>"),
    "forbidden": _plain(
        "forbidden",
        "key 'billing.cron' is outside the prefix 'cron-' of token #2 (write, prefix 'cron-')",
    ),
    "backend_unavailable": _plain("backend_unavailable", "the database cannot be reached"),
    "not_ready": _plain(
        "backend_unavailable", "the backend cannot be read or written; the service log says why"
    ),
    "too_many_requests": _plain(
        "too_many_requests",
        "cannot open a watch stream: token #2 (read, prefix 'cron-') already has 256 open "
        "watch streams, the most one caller may have",
    ),
    "internal": _plain("internal", "internal error; see the service log"),
}
