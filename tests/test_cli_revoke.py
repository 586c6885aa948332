"""``leaderelection revoke`` and ``LeaseClient.revoke`` against a real service."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_cli_status import acquire, cli

from leaderelection import Forbidden, LeaseClient, LeaseLost
from support.procs import ServiceProcess
from support.tokens import TokenSet


def test_revoke_ends_a_wedged_holders_term(service: ServiceProcess, http: httpx.Client) -> None:
    held = acquire(http, "cron-nightly", "host-a-4242", ttl=600)
    done = cli("revoke", "cron-nightly", "--server", service.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "revoked cron-nightly: host-a-4242's term (token 1) ended"
    record = http.get("/v1/leases/cron-nightly").json()
    assert (record["held"], record["state"]) == (False, "revoked")
    renew = {"holder": "host-a-4242", "fencing_token": held["fencing_token"]}
    lost = http.post("/v1/leases/cron-nightly/renew", json=renew)
    assert lost.status_code == 409 and "was revoked" in lost.json()["message"]
    table = cli("status", "--server", service.url)
    assert table.stdout.splitlines()[1].split()[-2] == "revoked"
    # A lease its holder released has nothing to revoke; a key never acquired is an error.
    gone = acquire(http, "gone", "h")
    http.post(
        "/v1/leases/gone/release", json={"holder": "h", "fencing_token": gone["fencing_token"]}
    )
    nothing = cli("revoke", "gone", "--server", service.url)
    assert nothing.returncode == 0 and nothing.stdout.startswith("nothing to revoke: gone")
    assert http.get("/v1/leases/gone").json()["state"] == "released"
    missing = cli("revoke", "never", "--server", service.url)
    assert missing.returncode == 1 and "404 not_found" in missing.stderr
    bad = cli("revoke", "../v1/leases", "--server", service.url)
    assert bad.returncode == 2 and "not a key" in bad.stderr


def test_client_revoke_needs_an_admin_token(tmp_path: Path) -> None:
    tokens = TokenSet.write(tmp_path / "tokens.json", op=("admin", ""), writer=("write", ""))
    data = tmp_path / "data"
    data.mkdir()
    with ServiceProcess(data.as_uri(), extra_args=("--auth-file", str(tokens.path))) as svc:
        with LeaseClient(svc.url, token=tokens.tokens["writer"]) as writer:
            lease = writer.acquire("job", "me", 60)
            with pytest.raises(Forbidden):
                writer.revoke("job")
            with LeaseClient(svc.url, token=tokens.tokens["op"]) as op:
                revoked = op.revoke("job")
            assert (revoked.state, revoked.held, revoked.holder) == ("revoked", False, "me")
            with pytest.raises(LeaseLost):
                writer.renew("job", "me", lease.fencing_token)
        denied = cli("revoke", "job", "--server", svc.url, "--token=" + tokens.tokens["writer"])
        assert denied.returncode == 1 and "403 forbidden" in denied.stderr
