"""``leaderelection status`` against a real service: the CLI as a user runs it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from leaderelection_service.commands import connection, status
from support.procs import REPO, ServiceProcess, free_port, wait_until
from support.tokens import TokenSet

SERVER_LIBRARIES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "psycopg",
    "prometheus_client",
    "yaml",
)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``leaderelection ARGS`` in a process where importing any server library fails."""
    blocker = (
        "import sys\n"
        f"for name in {SERVER_LIBRARIES!r}: sys.modules[name] = None\n"
        "from leaderelection_service.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
    return subprocess.run(
        [sys.executable, "-c", blocker, *args],
        env={**base, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def acquire(http: httpx.Client, key: str, holder: str, ttl: float = 30.0) -> dict[str, Any]:
    response = http.post(f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": ttl})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_status_json_lists_what_was_acquired(service: ServiceProcess, http: httpx.Client) -> None:
    a = acquire(http, "job-a", "host-a")
    b = acquire(http, "job-b", "host-b", ttl=45.5)
    released = http.post(
        "/v1/leases/job-b/release", json={"holder": "host-b", "fencing_token": b["fencing_token"]}
    )
    assert released.status_code == 200
    acquire(http, "other", "host-c")

    done = cli("status", "--server", service.url, "--prefix", "job-", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["server"] == service.url
    by_key = {lease["key"]: lease for lease in doc["leases"]}
    assert list(by_key) == ["job-a", "job-b"]
    assert by_key["job-a"]["holder"] == "host-a"
    assert by_key["job-a"]["fencing_token"] == a["fencing_token"]
    assert by_key["job-a"]["held"] is True
    assert by_key["job-b"]["held"] is False
    assert (by_key["job-a"]["state"], by_key["job-b"]["state"]) == ("held", "released")
    # the table names the states: job-b was released by its holder, not expired
    table = cli("status", "--server", service.url, "--prefix", "job-")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [(r[0], r[-2]) for r in rows] == [("job-a", "held"), ("job-b", "released")]
    assert rows[1][-3] == "-"  # no time left on a released lease


def test_status_table_shows_holder_token_time_left_and_state(
    service: ServiceProcess, http: httpx.Client
) -> None:
    acquire(http, "cron-nightly", "host-a-4242", ttl=30.0)
    env = {connection.SERVER_ENV: service.url}
    done = cli("status", env=env)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["KEY", "HOLDER", "TOKEN", "TIME", "LEFT", "STATE", "VALUE"]
    key, holder, token, left, state, value = row.split()
    assert (key, holder, token, state, value) == ("cron-nightly", "host-a-4242", "1", "held", "-")
    assert left.endswith("s") and 0 < float(left[:-1]) <= 30.0


def test_status_says_expired_once_a_lease_lapses(
    service: ServiceProcess, http: httpx.Client
) -> None:
    acquire(http, "short", "host-a", ttl=0.5)

    def lapsed() -> bool:
        return not http.get("/v1/leases/short").json()["held"]

    wait_until(lapsed, 10.0, what="the lease lapsing")
    done = cli("status", "--server", service.url)
    assert done.returncode == 0, done.stderr
    _, row = done.stdout.splitlines()
    assert row.split() == ["short", "host-a", "1", "-", "expired", "-"]


def test_status_follows_pages(
    service: ServiceProcess, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        acquire(http, f"page-{i}", f"host-{i}")
    monkeypatch.setattr(status, "PAGE", 2)
    with httpx.Client(base_url=service.url) as client:
        keys = [lease["key"] for lease in status.fetch(client, "page-")]
    assert keys == [f"page-{i}" for i in range(5)]


def test_status_watch_prints_each_poll(service: ServiceProcess, http: httpx.Client) -> None:
    acquire(http, "w-1", "host-a")
    argv = ["status", "--watch", "--json", "--interval", "0.2", "--server", service.url]
    proc = subprocess.Popen(
        [sys.executable, "-m", "leaderelection_service.cli", *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    docs: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        docs.extend(json.loads(line) for line in proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(docs) >= 1, 20.0, what="a first poll")
        acquire(http, "w-2", "host-b")

        def sees_both() -> bool:
            return any(len(doc.get("leases", [])) == 2 for doc in docs)

        wait_until(sees_both, 20.0, what="a poll showing the second lease")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()
    assert [lease["key"] for lease in docs[0]["leases"]] == ["w-1"]


def test_status_unreachable_service_is_one_line_and_exit_1() -> None:
    done = cli("status", "--server", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.startswith("leaderelection status: cannot reach")
    assert "Traceback" not in done.stderr


def test_status_bad_prefix_reports_the_service_error(service: ServiceProcess) -> None:
    done = cli("status", "--server", service.url, "--prefix", "../x")
    assert done.returncode == 1
    assert "422 invalid_request" in done.stderr


def test_status_sends_the_token(tmp_path: Path) -> None:
    tokens = TokenSet.write(tmp_path / "tokens.json", writer=("write", ""), ro=("read", ""))
    with ServiceProcess(
        (tmp_path / "data").as_uri(), extra_args=("--auth-file", str(tokens.path))
    ) as svc:
        http = httpx.post(
            f"{svc.url}/v1/leases/secured/acquire",
            json={"holder": "host-a", "ttl": 30},
            headers=tokens.header("writer"),
        )
        assert http.status_code == 200
        refused = cli("status", "--server", svc.url)
        assert refused.returncode == 1 and "401 unauthorized" in refused.stderr
        by_flag = cli("status", "--server", svc.url, "--token=" + tokens.tokens["ro"], "--json")
        assert [x["key"] for x in json.loads(by_flag.stdout)["leases"]] == ["secured"]
        by_env = cli(
            "status",
            "--json",
            env={connection.SERVER_ENV: svc.url, connection.TOKEN_ENV: tokens.tokens["ro"]},
        )
        assert by_env.returncode == 0, by_env.stderr


def test_token_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connection.TOKEN_ENV, raising=False)
    monkeypatch.delenv(connection.SERVER_ENV, raising=False)
    args = argparse.Namespace(server=None, token=None)
    assert connection.headers(args) == {}
    assert connection.server(args) == connection.DEFAULT_SERVER
    monkeypatch.setenv(connection.TOKEN_ENV, "from-env")
    monkeypatch.setenv(connection.SERVER_ENV, "http://leases.internal:9000/")
    assert connection.headers(args) == {"Authorization": "Bearer from-env"}
    assert connection.server(args) == "http://leases.internal:9000"
    flagged = argparse.Namespace(server="http://other:1", token="from-flag")
    assert connection.headers(flagged) == {"Authorization": "Bearer from-flag"}
    assert connection.server(flagged) == "http://other:1"


def test_status_shows_the_published_value(service: ServiceProcess, http: httpx.Client) -> None:
    long = "v" * 60
    for key, value in (("pub-a", "10.0.0.7:8443"), ("pub-b", long), ("pub-c", "two\nlines")):
        r = http.post(f"/v1/leases/{key}/acquire", json={"holder": "h", "ttl": 30, "value": value})
        assert r.status_code == 200
    done = cli("status", "--server", service.url, "--prefix", "pub-")
    assert done.returncode == 0, done.stderr
    values = [line.split()[-1] for line in done.stdout.splitlines()[1:]]
    assert values == ["10.0.0.7:8443", "v" * 39 + "…", "two\\nlines"]
    doc = json.loads(cli("status", "--server", service.url, "--prefix", "pub-", "--json").stdout)
    assert [lease["value"] for lease in doc["leases"]] == ["10.0.0.7:8443", long, "two\nlines"]


def test_status_shows_every_holder_of_a_semaphore(
    service: ServiceProcess, http: httpx.Client
) -> None:
    for holder in ("w-1", "w-2"):
        r = http.post("/v1/leases/jobs/acquire", json={"holder": holder, "ttl": 30, "limit": 3})
        assert r.status_code == 200, r.text
    done = cli("status", "--server", service.url, "--prefix", "jobs")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2], r[-2]) for r in rows] == [
        ("jobs[2/3]", "w-1", "1", "held"),
        ("jobs[2/3]", "w-2", "2", "held"),
    ]
    doc = json.loads(cli("status", "--server", service.url, "--json").stdout)
    (lease,) = doc["leases"]
    assert lease["limit"] == 3 and [h["holder"] for h in lease["holders"]] == ["w-1", "w-2"]
