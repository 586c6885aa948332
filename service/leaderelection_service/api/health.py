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
from leaderelection_service.api import examples
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.responses import answer, refused
from leaderelection_service.api.schemas import Health, Ready
from leaderelection_service.errors import BackendUnavailable

log = logging.getLogger("leaderelection")

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
    responses=answer("The backend answered; its kind", examples.READY)
    | refused(
        "internal",
        backend_unavailable="the backend does not answer; the service log says why",
    ),
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
