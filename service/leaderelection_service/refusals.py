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
    InvalidRequest,
    LeaseError,
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
    LimitMismatch,
)
from leaderelection_service.records import LeaseRecord, LeaseView


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
        how = "revoked" if rec.revoked else "released"
        if rec.successor is not None and not rec.revoked:
            how = f"handed to {rec.successor!r}"
        return LeaseLost(f"lease {key!r} was {how}", lease)
    if rec.holder == holder and rec.fencing_token == fencing_token and rec.successor is not None:
        return LeaseLost(
            f"lease {key!r} is being handed to {rec.successor!r}: step down and release it",
            lease,
        )
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


def reserved(key: str, lease: LeaseView) -> LeaseHeld:
    """Rule "transfer": the lease is handed to its successor, who alone may acquire it."""
    return LeaseHeld(
        f"lease {key!r} is handed to {lease.record.successor!r}; only it may acquire for now",
        lease,
    )


def not_transferable(key: str, lease: LeaseView) -> LeaseLost:
    """Rule "transfer" by an operator: the lease has no held term to hand on."""
    return LeaseLost(f"lease {key!r} is not held: there is no term to transfer", lease)


def to_the_holder(key: str, to: str) -> InvalidRequest:
    """Rule "transfer": a lease is never handed to the holder it already has."""
    return InvalidRequest(f"to: {to!r} already holds lease {key!r}; name another holder")


def acquire_refusal(key: str, lease: LeaseView, holder: str) -> LeaseHeld | None:
    """Why ``holder``'s acquire of ``lease`` is refused, or None when it is granted.

    Rule "acquire granted when free or already held by the caller", with rule
    "transfer": a free lease with a successor is reserved for it for one ttl,
    and a held term being handed on is not extended for its holder.
    """
    rec, now, allowance = lease.record, lease.server_time, lease.allowance
    if not rec.held_at(now, allowance):
        successor = rec.reserved_for(now, allowance)
        return reserved(key, lease) if successor not in (None, holder) else None
    if rec.holder != holder:
        return held(key, lease)
    return reserved(key, lease) if rec.successor is not None else None


def transfer_refusal(
    key: str, lease: LeaseView, *, to: str, holder: str | None, fencing_token: int | None
) -> LeaseError | None:
    """Why a transfer of ``lease`` to ``to`` is refused, or None when it is granted
    (or was done already: ``transferred_already``).

    By the holder (``holder`` given): as release, by that holder and token; by an
    operator (``holder`` None): while the term is held, to another than its holder.
    """
    rec, now, allowance = lease.record, lease.server_time, lease.allowance
    if rec.slots:  # a semaphore key has no one holder to hand on
        return LimitMismatch(
            f"lease {key!r} has limit {rec.limit}: only a key of limit 1 is transferred", lease
        )
    if holder is not None:
        if to == holder:
            return to_the_holder(key, to)
        if rec.holder != holder or rec.fencing_token != fencing_token:
            return lost(key, lease, holder, fencing_token or 0)
        if rec.released and not transferred_already(rec, to=to, holder=holder):
            return lost(key, lease, holder, fencing_token or 0)
        return None
    if not rec.held_at(now, allowance):
        return not_transferable(key, lease)
    return to_the_holder(key, to) if rec.holder == to else None


def transferred_already(rec: LeaseRecord, *, to: str, holder: str | None) -> bool:
    """The record already says what the transfer asks (a retry): nothing to write."""
    if holder is not None:
        return rec.released and not rec.revoked and rec.successor == to
    return rec.successor == to and not rec.released


def never_acquired(key: str) -> LeaseNotFound:
    """Renew, release and get of a key that has no record."""
    return LeaseNotFound(f"lease {key!r} was never acquired")
