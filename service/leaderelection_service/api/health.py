"""Liveness and readiness probes.

Both answer without a token, also when the service has tokens: kubelet and
Docker health checks send none. So neither says more than a probe needs:
``/readyz`` names the backend's kind (its URL scheme), never its host, path or
bucket, and an outage's details go to the service log, not to the caller.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from leaderelection_service import __version__
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.schemas import ErrorBody, Health, Ready
from leaderelection_service.errors import BackendUnavailable

log = logging.getLogger("leaderelection")

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorBody, "description": "backend_unavailable"}},
    summary="The backend answers",
)
async def readyz(backend: Backend) -> JSONResponse:
    try:
        await backend.ping()
    except BackendUnavailable as exc:
        log.warning("readyz: backend unavailable: %s", exc.message)
        raise BackendUnavailable(
            "the backend does not answer; the service log says why", exc.retry_after
        ) from exc
    kind = urlsplit(backend.description).scheme or backend.description.split()[0]
    return JSONResponse({"status": "ready", "backend": kind})
