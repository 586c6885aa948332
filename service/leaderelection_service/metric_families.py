"""The Prometheus metric families of this process: what ``GET /metrics`` exposes.

Example::

    metric_families.WATCH_DROPPED.inc()         # a subscriber fell too far behind

Who feeds them: ``request_metrics.RequestMetrics`` (requests by route template
and status), ``instrumented_backend.InstrumentedBackend`` (backend latency and
errors), the watch hub and streams (watch_*); ``metrics_rendering`` renders
them with the lease gauges, which are collected per scrape. One module of
definitions rather than one per feeder: the table below is the whole surface,
and a name is registered once however the feeders are imported.

| metric | type | labels |
|---|---|---|
| ``leaderelection_http_requests_total`` | counter | method, route, status |
| ``leaderelection_http_request_duration_seconds`` | histogram | method, route |
| ``leaderelection_backend_operation_duration_seconds`` | histogram | operation |
| ``leaderelection_backend_errors_total`` | counter | operation |
| ``leaderelection_watch_subscribers`` | gauge | |
| ``leaderelection_watch_events_total`` | counter | type |
| ``leaderelection_watch_dropped_total`` | counter | |
| ``leaderelection_leases`` | gauge | state (held, released, expired) |
| ``leaderelection_lease_transitions`` | gauge | key (top N keys, then ``_other``) |
| ``leaderelection_backend_up`` | gauge | |
| ``leaderelection_leases_age_seconds`` | gauge | |

Cardinality is bounded: ``route`` is the route's template (``/v1/leases/{key}``),
never the raw path (``unmatched`` for anything else); ``method`` is one of the
HTTP verbs or ``other``; ``key`` names at most N keys (setting
``metrics_key_labels``) with the most transitions, and ``_other`` sums the rest
(no key can be called ``_other``: keys start with a letter or digit).

The lease gauges come from ``lease_gauges.LeaseGauges``: this process's
writes and every expiry count at once, other replicas' writes within two
``metrics_refresh_interval`` (a listing of the backend in the background, never
one per scrape); ``leaderelection_leases_age_seconds`` says how old that
listing is. The rest are
per process; with ``--workers N`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` and
every worker's answer sums all workers (prometheus-client multiprocess mode).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
disable_created_metrics()  # the *_created series double the output and say little here

REQUESTS = Counter(
    "leaderelection_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "leaderelection_http_request_duration_seconds",
    "Time to answer an HTTP request (watch streams excluded: they last).",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_LATENCY = Histogram(
    "leaderelection_backend_operation_duration_seconds",
    "Time the backend took for one operation.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_ERRORS = Counter(
    "leaderelection_backend_errors",
    "Backend operations that failed with backend_unavailable.",
    ["operation"],
)
WATCH_SUBSCRIBERS = Gauge(
    "leaderelection_watch_subscribers",
    "Open watch streams.",
    multiprocess_mode="livesum",
)
WATCH_EVENTS = Counter(
    "leaderelection_watch_events",
    "Lease events sent on watch streams (replays on connect included), by type.",
    ["type"],
)
WATCH_DROPPED = Counter(
    "leaderelection_watch_dropped",
    "Watch subscribers dropped for falling too far behind.",
)
