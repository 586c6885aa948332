"""Service configuration: environment variables ``LEADERELECTION_*``, each also a
flag of ``leaderelection serve``.

Example::

    LEADERELECTION_BACKEND_URL=postgresql://db/leases leaderelection serve
    leaderelection serve --backend-url file:///var/lib/leaderelection --port 9000

Settings are checked when loaded: a bad value stops the service at start with
a message naming the setting, never a silent clamp.

A new setting is one ``Field`` here, with its default and its description:
``flags`` turns every field into a flag of ``serve`` whose help is that
description and default, and ``tests/test_cli_settings.py`` fails until the
README's configuration table has its row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leaderelection_service.sql_names import DEFAULT_TABLE, check_identifier

DEFAULT_DATA_DIR = "leaderelection-data"
"""The file backend's directory when no backend is configured (relative to the
working directory)."""


GCS_MIN_TTL = 2.0
"""Smallest ttl the gs:// backend accepts by default and at all. GCS takes about
one write per second to one object; a leader renews at least twice per ttl, so
a ttl under 2 s would renew one object faster than that."""


def default_backend_url() -> str:
    return Path(DEFAULT_DATA_DIR).absolute().as_uri()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADERELECTION_", extra="ignore")

    backend_url: str = Field(
        default_factory=default_backend_url,
        description="Where leases live: file:///dir, postgresql://…, sqlite:///…, "
        "mariadb+pymysql://…, gs://bucket/prefix; the flag also takes a plain directory.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    ttl_min: float = Field(
        0.5,
        gt=0,
        description=f"Smallest ttl a request may ask for, seconds ({GCS_MIN_TTL:g} on gs://, "
        "which refuses less).",
    )
    ttl_max: float = Field(3600.0, gt=0, description="Largest ttl a request may ask for, seconds.")
    clock_skew_allowance: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Seconds added to every lease's expiry before another holder may take it "
        "(for backends whose expiry is decided by several hosts' clocks).",
    )
    gcs_timeout: float = Field(
        5.0,
        gt=0,
        le=120,
        description="gs:// backend: longest one GCS call may take, retries included, "
        "before the request answers 503 backend_unavailable, seconds.",
    )
    file_sync: Literal["filesystem", "file"] = Field(
        "filesystem",
        description="file:// backend: how a batch of writes is made durable. filesystem: one "
        "syncfs(2) per batch, the fastest, but it also writes out whatever other programs left "
        "unwritten on that filesystem (give the directory a filesystem of its own); file: one "
        "fdatasync per written file, slower per batch, untouched by other programs' writes.",
    )
    max_body_bytes: int = Field(
        16384, ge=256, le=1 << 20, description="Largest request body accepted, bytes."
    )
    max_head_bytes: int = Field(
        65536,
        ge=1024,
        le=1 << 20,
        description="Largest request head (request line and headers), bytes; a larger one "
        "is answered 431 and its connection closed before more of it is read.",
    )
    read_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a request may take to arrive, head and body: from a connection's "
        "opening for its first request, from its first byte for the next ones. Then 408 (or, "
        "if nothing came, a silent close) and the connection is closed.",
    )
    idle_timeout: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Seconds a kept-alive connection may stay silent after an answer before "
        "it is closed (longer than common clients keep an idle connection, httpx 5 s, Go 90 s, "
        "so that the client closes first and never sends on a connection being closed).",
    )
    max_connections: int = Field(
        4096,
        ge=1,
        le=1 << 20,
        description="Open client connections per worker process; over it the oldest that "
        "never completed a request, then the longest idle, is closed (never one with a "
        "request in progress). Lowered at start to fit the open file limit.",
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    sql_table: str = Field(
        DEFAULT_TABLE,
        description="SQL backends: the lease table (its version lives in <table>_meta).",
    )
    sql_schema: str = Field(
        "", description="SQL backends: the schema (PostgreSQL) holding the table; empty: default."
    )
    sql_create_schema: bool = Field(
        True,
        description="SQL backends: create the tables at start if missing; false where the "
        "service may not run DDL (then run `leaderelection migrate`).",
    )
    sql_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description="SQL backends: pooled connections per worker process (PostgreSQL: "
        "a quarter of them, at least one, is how many batches of acquires, and of "
        "renewals, run at once).",
    )
    auth_file: Path | None = Field(
        None,
        description="JSON list of API tokens ({token, role, prefix}); when set, every route "
        "but the probes /healthz and /readyz needs one. Unset: no authentication.",
    )
    insecure: bool = Field(
        False,
        description="Allow a non-loopback host without an auth file (something in front "
        "of the service authenticates).",
    )
    watch_poll_interval: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="Seconds between two reads of the backend by the watch stream when the "
        "backend does not push changes (all but PostgreSQL) and no lease is about to lapse.",
    )
    watch_streams_per_token: int = Field(
        256,
        ge=1,
        le=1024,
        description="Open watch streams one API token may have (without authentication: "
        "one client address); more are answered 429 too_many_requests. The process "
        "takes 1024 at most, so one reader cannot take every slot.",
    )
    metrics_refresh_interval: float = Field(
        15.0,
        ge=0.1,
        le=3600,
        description="Seconds after which /metrics lists the backend again, in the background, "
        "for the lease gauges; they count this process's writes and every expiry at once, "
        "other replicas' writes within twice this.",
    )
    metrics_key_labels: int = Field(
        50,
        ge=0,
        le=1000,
        description="Keys named in /metrics' transitions gauge (those with the most); "
        'the rest are summed under key="_other".',
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be debug, info, warning or error")
        return v

    @field_validator("backend_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if "://" not in v:
            raise ValueError(
                "backend_url must be a URL such as file:///var/lib/leaderelection "
                "(the CLI also accepts a plain directory path)"
            )
        return v

    @field_validator("sql_table", "sql_schema")
    @classmethod
    def _identifier(cls, v: str, info: ValidationInfo) -> str:
        return check_identifier(str(info.field_name), v) if v else v

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.backend_url.lower().startswith("gs://") and self.ttl_min < GCS_MIN_TTL:
            if "ttl_min" in self.model_fields_set:
                raise ValueError(
                    f"ttl_min ({self.ttl_min}) is below {GCS_MIN_TTL} s, the least the gs:// "
                    "backend takes: GCS allows about one write per second to one object and "
                    "a leader renews at least twice per ttl"
                )
            self.ttl_min = GCS_MIN_TTL  # the gs:// default, documented in the README
        if self.ttl_min > self.ttl_max:
            raise ValueError(f"ttl_min ({self.ttl_min}) must not exceed ttl_max ({self.ttl_max})")
        return self


def env_for(**values: object) -> dict[str, str]:
    """The environment variables that carry ``values`` to worker processes."""
    return {
        f"LEADERELECTION_{k.upper()}": str(v)
        for k, v in values.items()
        if v is not None and k in Settings.model_fields
    }


def apply_env(values: dict[str, str]) -> None:
    os.environ.update(values)
