"""``leaderelection transfer KEY --to HOLDER`` against a real service."""

from __future__ import annotations

from pathlib import Path

import httpx
from test_cli_status import acquire, cli

from support.procs import ServiceProcess
from support.tokens import TokenSet


def test_transfer_names_the_successor_and_the_holder_is_told(
    service: ServiceProcess, http: httpx.Client
) -> None:
    held = acquire(http, "web-leader", "web-v1", ttl=600)
    done = cli("transfer", "web-leader", "--to", "web-v2", "--server", service.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "web-leader: web-v1 (token 1) is handed to web-v2"
    record = http.get("/v1/leases/web-leader").json()
    assert (record["held"], record["holder"], record["successor"]) == (True, "web-v1", "web-v2")
    renew = {"holder": "web-v1", "fencing_token": held["fencing_token"]}
    lost = http.post("/v1/leases/web-leader/renew", json=renew)
    assert lost.status_code == 409 and "handed to 'web-v2'" in lost.json()["message"]
    table = cli("status", "--server", service.url).stdout.splitlines()
    assert table[1].split()[:2] == ["web-leader", "web-v1→web-v2"]
    again = cli("transfer", "web-leader", "--to", "web-v2", "--server", service.url)
    assert again.returncode == 0  # already so: the same answer, nothing written
    assert http.get("/v1/leases/web-leader").json()["fencing_token"] == held["fencing_token"]


def test_transfer_refusals_exit_non_zero_and_change_nothing(
    service: ServiceProcess, http: httpx.Client
) -> None:
    missing = cli("transfer", "never", "--to", "b", "--server", service.url)
    assert missing.returncode == 1 and "404 not_found" in missing.stderr
    bad = cli("transfer", "../v1/leases", "--to", "b", "--server", service.url)
    assert bad.returncode == 2 and "not a key" in bad.stderr
    acquire(http, "job", "a")
    before = http.get("/v1/leases/job").json()
    for to, code, says in [("a", 1, "422 invalid_request"), ("x\ny", 2, "not a holder name")]:
        done = cli("transfer", "job", "--to", to, "--server", service.url)
        assert done.returncode == code and says in done.stderr, done.stderr
    after = http.get("/v1/leases/job").json()
    assert {k: v for k, v in after.items() if k != "server_time"} == {
        k: v for k, v in before.items() if k != "server_time"
    }
    no_to = cli("transfer", "job", "--server", service.url)
    assert no_to.returncode == 2 and "--to" in no_to.stderr


def test_transfer_needs_an_admin_token(tmp_path: Path) -> None:
    tokens = TokenSet.write(tmp_path / "tokens.json", op=("admin", ""), writer=("write", ""))
    data = tmp_path / "data"
    data.mkdir()
    with ServiceProcess(data.as_uri(), extra_args=("--auth-file", str(tokens.path))) as svc:
        with httpx.Client(
            base_url=svc.url, headers={"Authorization": "Bearer " + tokens.tokens["writer"]}
        ) as w:
            assert (
                w.post("/v1/leases/job/acquire", json={"holder": "me", "ttl": 60}).status_code
                == 200
            )
        # "--token=T": a token may begin with "-", which argparse reads as an option
        base = ("transfer", "job", "--to", "you", "--server", svc.url)
        denied = cli(*base, "--token=" + tokens.tokens["writer"])
        assert denied.returncode == 1 and "403 forbidden" in denied.stderr
        done = cli(*base, "--token=" + tokens.tokens["op"])
        assert done.returncode == 0 and "is handed to you" in done.stdout
