"""Real outages answer 503 naming the kind of failure, never a host, a port, a
path or a bucket; the service log keeps the detail, once per kind.

Issue 13: ``connection to server at "127.0.0.1", port 9599 failed`` and the
file backend's data directory reached every token holder. Each backend here
is a real one made to fail: a tmpfs remounted read-only and a removed
directory, a stopped PostgreSQL server, a stopped GCS emulator.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gcs import GcsEmulator
from support.procs import ServiceProcess, wait_until
from support.sqlservers import PostgresServer, throwaway_postgres
from support.tmpfs import remount, small_tmpfs


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body)


def assert_names_only_the_kind(resp: httpx.Response, kind: str, *secrets: str) -> None:
    assert resp.status_code == 503, (resp.request.url, resp.text)
    body = resp.json()
    assert body["error"] == "backend_unavailable"
    assert body["message"] == kind, (resp.request.url, body)
    assert int(resp.headers["Retry-After"]) >= 1
    for secret in secrets:
        assert secret not in resp.text, (secret, resp.text)


def log_lines(path: Path, kind: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if kind in line]


def test_file_outages_name_the_kind_never_the_directory(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size_kib=1024) as disk:
        data = disk / "leases-data"
        data.mkdir()
        log = tmp_path / "service.log"
        hidden = (str(disk), "leases-data", "/leases", ".json", ".lock")
        with (
            ServiceProcess(data.as_uri(), log_path=log) as svc,
            httpx.Client(base_url=svc.url, timeout=30) as http,
        ):
            held = post(http, "/v1/leases/k/acquire", {"holder": "a", "ttl": 60}).json()
            remount(disk, "ro")
            try:
                kind = "the storage directory cannot be written"
                for _ in range(3):
                    resp = post(http, "/v1/leases/new/acquire", {"holder": "a", "ttl": 60})
                    assert_names_only_the_kind(resp, kind, *hidden)
                renew = {"holder": "a", "fencing_token": held["fencing_token"]}
                assert_names_only_the_kind(post(http, "/v1/leases/k/renew", renew), kind, *hidden)
                # The log keeps the detail and the directory, once for the kind.
                lines = log_lines(log, kind)
                assert len(lines) == 1, lines
                assert "Read-only file system" in lines[0] and str(data) in lines[0]
            finally:
                remount(disk, "rw")
            assert post(http, "/v1/leases/k/renew", renew).status_code == 200

            shutil.rmtree(data)
            resp = post(http, "/v1/leases/other/acquire", {"holder": "a", "ttl": 60})
            assert_names_only_the_kind(resp, "the storage directory is missing", *hidden)
            assert_names_only_the_kind(
                http.get("/v1/leases"), "the storage directory is missing", *hidden
            )
            (data / "leases").mkdir(parents=True)  # another directory in its place
            assert_names_only_the_kind(
                http.get("/v1/leases"), "the storage directory was removed or replaced", *hidden
            )
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["message"] == (
                "the backend cannot be read or written; the service log says why"
            )


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with throwaway_postgres() as server:
        yield server


def test_a_stopped_database_is_named_never_its_host_or_port(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    log = tmp_path / "service.log"
    hidden = ("127.0.0.1", str(own_postgres.port), "localhost", "postgres@", "connection to")
    with (
        ServiceProcess(own_postgres.url, log_path=log) as svc,
        httpx.Client(base_url=svc.url, timeout=30) as http,
    ):
        held = post(http, "/v1/leases/k/acquire", {"holder": "a", "ttl": 60}).json()
        own_postgres.stop("fast")
        kind = "the database cannot be reached"
        renew = {"holder": "a", "fencing_token": held["fencing_token"]}
        assert_names_only_the_kind(post(http, "/v1/leases/k/renew", renew), kind, *hidden)
        assert_names_only_the_kind(
            post(http, "/v1/leases/new/acquire", {"holder": "a", "ttl": 60}), kind, *hidden
        )
        assert_names_only_the_kind(http.get("/v1/leases/k"), kind, *hidden)
        assert_names_only_the_kind(http.get("/v1/leases"), kind, *hidden)
        lines = log_lines(log, kind)
        assert len(lines) == 1, lines
        assert str(own_postgres.port) in lines[0]  # the detail stays in the log
        own_postgres.start()
        wait_until(
            lambda: post(http, "/v1/leases/k/renew", renew).status_code == 200,
            30,
            what="a renewal after PostgreSQL came back",
        )


def test_a_stopped_gcs_is_named_never_its_endpoint_or_bucket(tmp_path: Path) -> None:
    emu = GcsEmulator(root=tmp_path / "gcs-data", log_path=tmp_path / "gcs.log")
    log = tmp_path / "service.log"
    with emu:
        bucket = emu.create_bucket()
        hidden = (bucket, str(emu.port), "127.0.0.1", "localhost", "http")
        svc = ServiceProcess(
            f"gs://{bucket}/leases",
            env=emu.env(),
            extra_args=("--gcs-timeout", "1"),
            log_path=log,
        )
        with svc, httpx.Client(base_url=svc.url, timeout=30) as http:
            held = post(http, "/v1/leases/k/acquire", {"holder": "a", "ttl": 60}).json()
            emu.stop()
            renew = {"holder": "a", "fencing_token": held["fencing_token"]}
            answers = [
                post(http, "/v1/leases/k/renew", renew),
                post(http, "/v1/leases/new/acquire", {"holder": "a", "ttl": 60}),
                http.get("/v1/leases/k"),
                http.get("/v1/leases"),
            ]
            kinds = {r.json()["message"] for r in answers}
            assert kinds <= {"GCS did not answer in time", "GCS cannot be reached"}, kinds
            for resp in answers:
                assert_names_only_the_kind(resp, resp.json()["message"], *hidden)
            assert any(bucket in line for k in kinds for line in log_lines(log, k))
            emu.start()
            wait_until(
                lambda: post(http, "/v1/leases/k/renew", renew).status_code == 200,
                30,
                what="a renewal after the emulator came back",
            )
