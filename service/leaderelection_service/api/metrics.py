"""``GET /metrics``: Prometheus text exposition (see ``leaderelection_service.metric_families``).

Example::

    curl -s -H "Authorization: Bearer $TOKEN" localhost:8080/metrics

The lease gauges are answered from memory (``lease_gauges``), not from a
listing of the backend per scrape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from leaderelection_service.api import examples
from leaderelection_service.api.deps import AppSettings
from leaderelection_service.api.responses import answer, refused
from leaderelection_service.api.security import Caller
from leaderelection_service.lease_errors import Forbidden
from leaderelection_service.lease_gauges import LeaseGauges
from leaderelection_service.metrics_rendering import render_leases, render_process

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="metrics",
    responses=answer("Prometheus text format", examples.METRICS, media_type="text/plain")
    | refused("unauthorized", "internal", forbidden="a token limited to a prefix"),
    summary="Prometheus metrics of this process (all workers' with --workers N)",
)
async def prometheus_metrics(request: Request, settings: AppSettings, who: Caller) -> Response:
    if who.prefix:
        raise Forbidden(f"/metrics names every key: {who.label} is limited to {who.prefix!r}")
    gauges: LeaseGauges = request.app.state.lease_gauges
    top = settings.metrics_key_labels
    counts = await gauges.counts(top)
    answering = getattr(request.app.state.backend, "answering", True)
    body = render_process() + render_leases(counts, top, answering)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
