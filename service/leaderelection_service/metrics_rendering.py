"""The text ``GET /metrics`` answers: this process's families and the lease gauges.

Example::

    body = render_process() + render_leases(await gauges.counts(top=50), 50, backend.answering)

The lease gauges are rendered per scrape from the counts given, not kept as
registered gauges: a key that leaves the top N must leave the output too.
With ``--workers N`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` and every
worker's answer sums all workers (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leaderelection_service import metric_families  # noqa: F401  (registers what it renders)
from leaderelection_service.lease_gauges import LeaseCounts

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "_other"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render_process() -> bytes:
    """This process's metrics, or every worker's summed in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited() -> None:
    """Forget this worker's live gauges (multiprocess mode; at shutdown)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _LeaseCollector(Collector):
    def __init__(self, counts: LeaseCounts | None, top: int, up: bool) -> None:
        self.counts = counts
        self.top = top
        self.up = up and counts is not None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "leaderelection_backend_up",
            "1 if the backend answered this process's last operation and last listing.",
        )
        up.add_metric([], 1 if self.up else 0)
        yield up
        if self.counts is None:
            return
        c = self.counts
        age = GaugeMetricFamily(
            "leaderelection_leases_age_seconds",
            "Seconds since the listing of the backend the lease gauges rest on began "
            "(this process's writes and expiries count at once).",
        )
        age.add_metric([], round(c.age, 3))
        yield age
        leases = GaugeMetricFamily(
            "leaderelection_leases", "Leases in the backend, by state.", labels=["state"]
        )
        for st, n in (("held", c.held), ("released", c.released), ("expired", c.expired)):
            leases.add_metric([st], n)
        yield leases
        transitions = GaugeMetricFamily(
            "leaderelection_lease_transitions",
            f"Times the holder changed, for the {self.top} keys with the most; "
            f"{OTHER} sums the rest.",
            labels=["key"],
        )
        for key, n in c.top:
            transitions.add_metric([key], n)
        if c.other is not None:
            transitions.add_metric([OTHER], c.other)
        yield transitions


def render_leases(counts: LeaseCounts | None, top: int, up: bool = True) -> bytes:
    """The lease gauges (None: the backend could not be listed) and backend_up."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LeaseCollector(counts, top, up))
    return generate_latest(registry)
