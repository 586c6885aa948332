"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from leaderelection_service import __version__
from leaderelection_service.api.deps import Backend
from leaderelection_service.api.schemas import ErrorBody, Health, Ready
from leaderelection_service.api.security import Reader

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    response_model=Ready,
    dependencies=[Reader],
    responses={
        401: {"model": ErrorBody, "description": "unauthorized: no valid API token"},
        503: {"model": ErrorBody, "description": "backend_unavailable"},
    },
    summary="The backend answers",
)
async def readyz(backend: Backend) -> JSONResponse:
    await backend.ping()
    return JSONResponse({"status": "ready", "backend": backend.description})
