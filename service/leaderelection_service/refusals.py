"""The lease rules' refusals: which error each refused operation raises, and its message.

Example::

    raise held("cron", view)                      # LeaseHeld, 409 lease_held
    raise lost("cron", view, "host-a", 7)         # LeaseLost, 409 lease_lost
    raise never_acquired("cron")                  # LeaseNotFound, 404 not_found

The rules are decided in two places: ``lease_rules.py`` over record stores, and
the SQL backend's statements (``backends/sql/``), which decide inside the
database and read back why a write was refused. Both refuse through these
functions, so a client sees the same code and the same message from every
backend (the contract suite checks the words on each). The rules are named as in
docs/contract.md.

Why functions rather than messages kept on the exception classes: the
message depends on the record (``lost`` tells a released lease from one taken
by another term), and ``lease_errors.py`` stays a vocabulary of codes and statuses
that knows nothing of leases' state.
"""

from __future__ import annotations

from leaderelection_service.lease_errors import (
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
    LimitMismatch,
)
from leaderelection_service.records import LeaseView


def held(key: str, lease: LeaseView) -> LeaseHeld:
    """Rule "acquire granted when free or already held by the caller": another holds it."""
    return LeaseHeld(f"lease {key!r} is held by another holder", lease)


def lost(key: str, lease: LeaseView, holder: str, fencing_token: int) -> LeaseLost:
    """Rule "renew and release only by the holder with its fencing token": refused.

    ``lease`` is the current record: when it still names this holder and token
    the lease was released (a renew after one's own release); otherwise another
    term has begun since.
    """
    rec = lease.record
    if rec.holder == holder and rec.fencing_token == fencing_token and rec.released:
        return LeaseLost(f"lease {key!r} was {'revoked' if rec.revoked else 'released'}", lease)
    return LeaseLost(
        f"lease {key!r} is no longer held by this holder with this fencing token", lease
    )


def limit_mismatch(key: str, lease: LeaseView, asked: int) -> LimitMismatch:
    """Rule "one limit per key": an acquire asked for another limit while the key is held."""
    return LimitMismatch(
        f"lease {key!r} has limit {lease.record.limit}, not {asked}; "
        "only an admin token may change it while it is held",
        lease,
    )


def never_acquired(key: str) -> LeaseNotFound:
    """Renew, release and get of a key that has no record."""
    return LeaseNotFound(f"lease {key!r} was never acquired")
