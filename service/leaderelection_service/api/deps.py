"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from leaderelection_service.lease_errors import InvalidRequest
from leaderelection_service.records import KEY_PATTERN, VALUE_MAX_BYTES
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend


def get_backend(request: Request) -> LeaseBackend:
    backend: LeaseBackend = request.app.state.backend
    return backend


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Backend = Annotated[LeaseBackend, Depends(get_backend)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Key = Annotated[
    str,
    Path(
        pattern=KEY_PATTERN,
        description="The election's name: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        examples=["cron-nightly"],
    ),
]


def check_holder(holder: str, field: str = "holder") -> str:
    if not holder.isprintable():
        raise InvalidRequest(f"{field}: must be 1-256 printable characters")
    return holder


def check_ttl(ttl: float, settings: Settings) -> float:
    if not settings.ttl_min <= ttl <= settings.ttl_max:
        raise InvalidRequest(
            f"ttl: must be between {settings.ttl_min:g} and {settings.ttl_max:g} seconds, "
            f"got {ttl:g}"
        )
    return round(ttl, 3)


def check_value(value: str | None) -> str | None:
    """A lease's value: at most ``VALUE_MAX_BYTES`` of UTF-8, no NUL (PostgreSQL text has none)."""
    if value is None:
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("value: must be valid Unicode text (no lone surrogates)") from None
    if size > VALUE_MAX_BYTES:
        raise InvalidRequest(f"value: must be at most {VALUE_MAX_BYTES} bytes of UTF-8, got {size}")
    if "\x00" in value:
        raise InvalidRequest("value: must not contain U+0000")
    return value
