"""The dashboard at ``/``: static HTML, CSS and JavaScript served by the app.

Example::

    open http://127.0.0.1:8080/

No CDN and no build step: the files under ``static/`` are the dashboard. The
page reads ``/v1/watch`` (fetch-based Server-Sent Events, so that it can send
an ``Authorization`` header when the service asks for a token) and
``/v1/leases/{key}/history``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
