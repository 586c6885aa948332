"""``GET /metrics`` parses with prometheus-client's own parser and counts what happened.

Each test runs its own service, so the counts start from zero.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from support.procs import ServiceProcess, wait_until
from support.sse import SseReader


def scrape(http: httpx.Client) -> list[Sample]:
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(r.text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample ``name`` whose labels include ``labels`` (0 if there is none)."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def label_values(samples: list[Sample], name: str, label: str) -> set[str]:
    return {s.labels[label] for s in samples if s.name == name}


@pytest.fixture
def small(data_dir: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        data_dir.as_uri(),
        extra_args=("--metrics-key-labels", "2"),
        log_path=tmp_path / "service.log",
    )
    with svc:
        yield svc


def test_metrics_count_requests_leases_transitions_and_subscribers(
    small: ServiceProcess,
) -> None:
    acquire = "/v1/leases/{key}/acquire"
    with httpx.Client(base_url=small.url, timeout=10) as http:
        for key, holders in {"k1": "abc", "k2": "ab", "k3": "a", "k4": "ab"}.items():
            for h in holders:  # each a new term by another holder: a transition each
                lease = http.post(f"/v1/leases/{key}/acquire", json={"holder": h, "ttl": 60})
                assert lease.status_code == 200
                r = http.post(
                    f"/v1/leases/{key}/release",
                    json={"holder": h, "fencing_token": lease.json()["fencing_token"]},
                )
                assert r.status_code == 200
        http.post("/v1/leases/k3/acquire", json={"holder": "z", "ttl": 60})  # k3 held by z
        assert (
            http.post("/v1/leases/k3/acquire", json={"holder": "y", "ttl": 60}).status_code == 409
        )
        assert http.post("/v1/leases/bad key/acquire", json={}).status_code == 422
        assert http.get("/no/such/route").status_code == 404

        with SseReader(f"{small.url}/v1/watch?prefix=k"):
            during = scrape(http)
        wait_until(
            lambda: value(scrape(http), "leaderelection_watch_subscribers") == 0,
            10,
            what="the closed stream to be counted out",
        )
        after = scrape(http)

    assert value(after, "leaderelection_http_requests_total", route=acquire, status="200") == 9
    assert value(after, "leaderelection_http_requests_total", route=acquire, status="409") == 1
    assert value(after, "leaderelection_http_requests_total", route=acquire, status="422") == 1
    assert value(after, "leaderelection_http_requests_total", route="unmatched", status="404") == 1
    assert (
        value(
            after,
            "leaderelection_http_requests_total",
            route="/v1/watch",
            method="GET",
            status="200",
        )
        == 1
    )
    assert value(after, "leaderelection_http_request_duration_seconds_count", route=acquire) == 11
    routes = label_values(after, "leaderelection_http_requests_total", "route")
    assert all(r.startswith("/") or r == "unmatched" for r in routes)
    assert not any("k1" in r or "bad key" in r for r in routes)  # templates, not raw paths

    assert value(during, "leaderelection_watch_subscribers") == 1
    assert value(during, "leaderelection_watch_events_total", type="released") == 3
    assert value(during, "leaderelection_watch_events_total", type="acquired") == 1

    assert value(after, "leaderelection_leases", state="held") == 1
    assert value(after, "leaderelection_leases", state="released") == 3
    assert value(after, "leaderelection_backend_up") == 1
    # transitions: k1 2, k2 1, k3 1 (a, then z), k4 1; the top 2 are named, the rest summed
    assert value(after, "leaderelection_lease_transitions", key="k1") == 2
    assert value(after, "leaderelection_lease_transitions", key="k2") == 1
    assert value(after, "leaderelection_lease_transitions", key="_other") == 2
    assert label_values(after, "leaderelection_lease_transitions", "key") == {"k1", "k2", "_other"}
    assert (
        value(after, "leaderelection_backend_operation_duration_seconds_count", operation="acquire")
        == 10  # the 422 never reached the backend
    )


def test_backend_errors_are_counted(service: ServiceProcess, data_dir: Path) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as http:
        assert http.post("/v1/leases/e/acquire", json={"holder": "a", "ttl": 5}).status_code == 200
        shutil.rmtree(data_dir)  # the store is gone: writes cannot be made durable
        r = http.post("/v1/leases/e/acquire", json={"holder": "a", "ttl": 5})
        assert r.status_code == 503 and r.json()["error"] == "backend_unavailable"
        samples = scrape(http)
    assert value(samples, "leaderelection_backend_errors_total", operation="acquire") == 1
    assert value(samples, "leaderelection_backend_up") == 0  # the scrape still answers
    assert (
        value(
            samples,
            "leaderelection_http_requests_total",
            route="/v1/leases/{key}/acquire",
            status="503",
        )
        == 1
    )


def test_workers_share_one_view_of_the_counters(data_dir: Path, tmp_path: Path) -> None:
    svc = ServiceProcess(
        data_dir.as_uri(),
        workers=2,
        extra_args=("--metrics-refresh-interval", "0.5"),
        log_path=tmp_path / "service.log",
    )
    with svc:
        for i in range(12):  # a new connection each: either worker may answer
            r = httpx.post(f"{svc.url}/v1/leases/w{i}/acquire", json={"holder": "a", "ttl": 60})
            assert r.status_code == 200
        for _ in range(4):
            with httpx.Client(base_url=svc.url, timeout=10) as http:
                samples = scrape(http)
            total = value(
                samples,
                "leaderelection_http_requests_total",
                route="/v1/leases/{key}/acquire",
                status="200",
            )
            assert total == 12  # every worker's, whichever answered the scrape

        def every_worker_sees_all() -> bool:
            for _ in range(4):  # the other worker's writes: within the refresh interval
                with httpx.Client(base_url=svc.url, timeout=10) as http:
                    if value(scrape(http), "leaderelection_leases", state="held") != 12:
                        return False
            return True

        wait_until(every_worker_sees_all, 15, what="both workers' lease gauges at 12")
