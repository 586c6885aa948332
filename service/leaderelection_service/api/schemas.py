"""Request and response bodies of HTTP API v1 (what openapi.yaml documents).

Times are ``Timestamp``: strings the records write (``records.rfc3339``: UTC,
microseconds, ``Z``), declared ``format: date-time`` so that generated clients
type them as times. A ``datetime`` field was the alternative: pydantic would
write ``...:16Z`` without the microseconds when they are zero, a change of the
wire format.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from leaderelection_service.records import HOLDER_MAX, VALUE_MAX_BYTES, LeaseState
from leaderelection_service.semaphore_rules import LIMIT_MAX

ErrorCode = Literal[
    "lease_held",
    "lease_lost",
    "limit_mismatch",
    "not_found",
    "invalid_request",
    "unauthorized",
    "forbidden",
    "too_many_requests",
    "backend_unavailable",
    "internal",
]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""RFC 3339 UTC with microseconds and ``Z``: ``2026-11-27T09:20:16.123456Z``."""

_TTL = Field(
    description="Seconds the grant lasts, millisecond precision; within the service's "
    "ttl_min..ttl_max (default 0.5..3600).",
    allow_inf_nan=False,
    strict=True,
    examples=[10.0],
)
_HOLDER = Field(
    min_length=1,
    max_length=HOLDER_MAX,
    description="The candidate's identity: 1-256 printable characters.",
    examples=["host-a-4242-9f1c"],
)
_TOKEN = Field(ge=1, description="The fencing token the acquire answered.", examples=[7])


_VALUE = Field(
    default=None,
    max_length=VALUE_MAX_BYTES,
    description="What the holder publishes (its address, its version): at most 4096 bytes "
    "of UTF-8, no U+0000. Omitted: acquire starts a term without a value, or keeps the "
    "value when it extends the caller's own term; renew keeps the value.",
    examples=["10.0.0.7:8443"],
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcquireBody(_Body):
    holder: StrictStr = _HOLDER
    ttl: float = _TTL
    value: StrictStr | None = _VALUE
    # Optional rather than defaulting to 1, as ``announce`` below (generated clients).
    limit: StrictInt | None = Field(
        default=None,
        ge=1,
        le=LIMIT_MAX,
        description="How many holders the key grants at once (a semaphore), "
        f"1-{LIMIT_MAX}. Omitted: 1, a plain lease. While the key is held, another limit "
        "is refused `limit_mismatch` unless the token is an admin token, which sets it.",
        examples=[3],
    )


class RenewBody(_Body):
    holder: StrictStr = _HOLDER
    fencing_token: StrictInt = _TOKEN
    ttl: float | None = Field(
        default=None,
        description="New ttl in seconds; omitted: the lease's current ttl.",
        allow_inf_nan=False,
        strict=True,
    )
    value: StrictStr | None = _VALUE
    # Optional rather than defaulting to false: code generators (openapi-typescript's
    # default) make a property with a default required in request bodies.
    announce: StrictBool | None = Field(
        default=None,
        description="With a value: true sends the change to every watcher, not only to those "
        "that asked for renewals (docs/watch.md). Omitted: false.",
    )


class ReleaseBody(_Body):
    holder: StrictStr = _HOLDER
    fencing_token: StrictInt = _TOKEN


class TransferBody(_Body):
    """By the holder: ``holder``, ``fencing_token`` and ``to``; by an operator
    (admin token): ``to`` alone."""

    holder: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=HOLDER_MAX,
        description="The current holder (with its fencing_token); omitted: an operator's "
        "transfer, which needs an admin token.",
        examples=["host-a-4242-9f1c"],
    )
    fencing_token: StrictInt | None = Field(
        default=None, ge=1, description="The holder's fencing token; with holder.", examples=[7]
    )
    to: StrictStr = Field(
        min_length=1,
        max_length=HOLDER_MAX,
        description="The successor: the only candidate that may acquire the lease for one ttl "
        "after the current term ends (1-256 printable characters, not the current holder).",
        examples=["host-b-0731-2d4e"],
    )


class Slot(BaseModel):
    """One holder's slot of a semaphore key."""

    holder: str
    fencing_token: int = Field(description="Strictly increases across all of the key's grants.")
    ttl: float
    acquired_at: Timestamp
    renewed_at: Timestamp
    expires_at: Timestamp
    state: LeaseState
    value: str | None


class Lease(BaseModel):
    """A lease record as one clock saw it."""

    key: str
    holder: str
    fencing_token: int = Field(description="Strictly increases with every new term of the key.")
    ttl: float = Field(description="Seconds the current grant lasts.")
    acquired_at: Timestamp = Field(description="RFC 3339 UTC: when the current term began.")
    renewed_at: Timestamp = Field(description="RFC 3339 UTC: the last acquire or renew.")
    expires_at: Timestamp = Field(description="RFC 3339 UTC: when the grant lapses unless renewed.")
    transitions: int = Field(description="How many times the holder changed.")
    held: bool = Field(description="False once expired or released.")
    state: LeaseState = Field(
        description="held; released (freed by its holder); expired (lapsed, not renewed). "
        "Decided on the deciding clock, with `held`."
    )
    value: str | None = Field(description="What the holder published; null: nothing.")
    server_time: Timestamp = Field(description="RFC 3339 UTC: the deciding clock at the answer.")
    successor: str | None = Field(
        default=None,
        description="Present only while the lease is handed to this holder (a transfer): for "
        "one ttl after the term ends only it may acquire. Absent otherwise.",
    )
    limit: int | None = Field(
        default=None,
        description="A semaphore key only (absent for a plain lease): how many holders it "
        "grants at once.",
    )
    holders: list[Slot] | None = Field(
        default=None,
        description="A semaphore key only (absent for a plain lease): every slot held now, "
        "oldest grant first. The fields above describe one slot: the caller's in an "
        "acquire, renew or release answer; the most recently granted one held in a lookup.",
    )


class LeaseList(BaseModel):
    leases: list[Lease]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class ErrorBody(BaseModel):
    """Every error answer, whatever the status."""

    error: ErrorCode = Field(description="What went wrong, for programs: one code per kind.")
    message: str = Field(description="What went wrong, for people.")
    lease: Lease | None = Field(
        description="The current record for `lease_held` and `lease_lost`; otherwise null."
    )


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    status: str
    backend: str = Field(description="The backend's kind (its URL scheme): file, postgresql, gs, …")
    warnings: list[str] = Field(
        default_factory=list,
        description="Present when the backend answers but may not keep the contract, e.g. a "
        "PostgreSQL primary that replicates to its standbys asynchronously",
    )
