"""``GET /metrics``: Prometheus text exposition (see ``leaderelection_service.metrics``)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from leaderelection_service import metrics
from leaderelection_service.api import examples
from leaderelection_service.api.deps import AppSettings, Backend
from leaderelection_service.api.responses import answer, refused
from leaderelection_service.api.security import Caller
from leaderelection_service.errors import Forbidden, LeaseError
from leaderelection_service.records import LeaseView
from leaderelection_service.watch import scan

log = logging.getLogger("leaderelection")
router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="metrics",
    responses=answer("Prometheus text format", examples.METRICS, media_type="text/plain")
    | refused("unauthorized", "internal", forbidden="a token limited to a prefix"),
    summary="Prometheus metrics of this process (all workers' with --workers N)",
)
async def prometheus_metrics(backend: Backend, settings: AppSettings, who: Caller) -> Response:
    if who.prefix:
        raise Forbidden(f"/metrics names every key: {who.label} is limited to {who.prefix!r}")
    views: list[LeaseView] | None
    try:
        views = await scan(backend, "")
    except Exception as exc:  # a scrape always answers; backend_up 0 says the rest is missing
        message = exc.message if isinstance(exc, LeaseError) else repr(exc)
        log.warning("metrics: cannot list the leases: %s", message)
        views = None
    body = metrics.render_process() + metrics.render_leases(views, settings.metrics_key_labels)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
