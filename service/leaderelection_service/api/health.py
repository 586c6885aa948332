"""Liveness and readiness probes.

Both answer without a token, also when the service has tokens: kubelet and
Docker health checks send none. So neither says more than a probe needs:
``/readyz`` names the backend's kind (its URL scheme), never its host, path or
bucket, and an outage's details go to the service log, not to the caller (not
even the kind of failure: a probe needs only ready or not). The check
(``readiness``) is the backend's ping, which writes where a backend's disk
can fill up, shared by every probe for a second. A ready backend that may
not keep the contract (a PostgreSQL primary replicating asynchronously to
standbys) says why in ``warnings``; the probe stays 200, since the service
does work.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from leaderelection_service import __version__
from leaderelection_service.api import examples
from leaderelection_service.api.answers import error_response
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.responses import answer, refused
from leaderelection_service.api.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    operation_id="health",
    responses=answer("Alive, and its version", examples.HEALTH) | refused("internal"),
    summary="The process is alive",
)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    response_model=Ready,
    operation_id="ready",
    responses=answer("The backend answered and can write; its kind", examples.READY)
    | refused("internal", "not_ready"),
    summary="The backend answers and can write",
)
async def readyz(request: Request, backend: Backend) -> JSONResponse:
    failure = await request.app.state.readiness.check()
    if failure is not None:
        request.app.state.failures.public(failure, where="readyz")  # the log line
        return error_response(
            503,
            "backend_unavailable",
            "the backend cannot be read or written; the service log says why",
            headers={"Retry-After": str(max(1, round(failure.retry_after)))},
        )
    kind = urlsplit(backend.description).scheme or backend.description.split()[0]
    body: dict[str, object] = {"status": "ready", "backend": kind}
    warning = request.app.state.readiness.warning
    if warning is not None:  # its text names settings, never a host or path
        body["warnings"] = [warning]
    return JSONResponse(body)
