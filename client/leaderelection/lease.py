"""``Lease``: a lease record as the service answered it.

Example::

    lease = client.acquire("cron", "host-a", ttl=10)
    lease.fencing_token      # 7: pass it along with every write you make as leader
    lease.holder, lease.state, lease.expires_at   # state: held, released, expired
    lease.value              # what the holder published, or None

Times are the service's clock (``server_time`` says when it answered). The
elector never uses them to decide whether it leads: only ``time.monotonic()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 time, got {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _value(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string value, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Slot:
    """One holder's slot of a semaphore key (``Lease.holders``)."""

    holder: str
    fencing_token: int
    ttl: float
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    state: str
    value: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Slot:
        if not isinstance(data, dict):
            raise ValueError(f"expected a slot object, got {type(data).__name__}")
        return cls(
            holder=str(data["holder"]),
            fencing_token=int(data["fencing_token"]),
            ttl=float(data["ttl"]),
            acquired_at=_time(data["acquired_at"]),
            renewed_at=_time(data["renewed_at"]),
            expires_at=_time(data["expires_at"]),
            state=str(data["state"]),
            value=_value(data.get("value")),
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """One key's lease record (the contract's JSON object, typed)."""

    key: str
    holder: str
    fencing_token: int
    """Strictly increases with every new term of the key; renewals keep it."""
    ttl: float
    """Seconds the current grant lasts."""
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    transitions: int
    """How many times the holder changed."""
    held: bool
    """False once expired or released."""
    state: str
    """``held``, ``released`` (freed by its holder), ``expired`` (lapsed) or
    ``revoked`` (ended by an operator), as the service decided it on its clock."""
    server_time: datetime
    """The deciding clock when the service answered."""
    value: str | None = None
    """What the holder published (its address, its version); None: nothing."""
    successor: str | None = None
    """The holder the lease is being handed to (a transfer); None: nobody."""
    limit: int = 1
    """How many holders the key grants at once; 1: a plain lease."""
    holders: tuple[Slot, ...] = ()
    """A semaphore key's slots held now, oldest grant first (empty for a plain
    lease); the fields above describe one of them (the caller's, in an answer
    to its acquire, renew or release)."""

    @classmethod
    def from_json(cls, data: Any) -> Lease:
        """Parse the contract's record; ``ValueError`` if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a lease object, got {type(data).__name__}")
        try:
            return cls(
                key=str(data["key"]),
                holder=str(data["holder"]),
                fencing_token=int(data["fencing_token"]),
                ttl=float(data["ttl"]),
                acquired_at=_time(data["acquired_at"]),
                renewed_at=_time(data["renewed_at"]),
                expires_at=_time(data["expires_at"]),
                transitions=int(data["transitions"]),
                held=bool(data["held"]),
                state=str(data["state"]),
                server_time=_time(data["server_time"]),
                value=_value(data.get("value")),
                successor=_value(data.get("successor")),
                limit=int(data.get("limit", 1)),
                holders=tuple(Slot.from_json(h) for h in data.get("holders") or ()),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a lease record: {exc!r}") from exc

    @property
    def remaining(self) -> float:
        """Seconds until expiry by the service's clock at its answer (0 if lapsed)."""
        return max(0.0, (self.expires_at - self.server_time).total_seconds())
