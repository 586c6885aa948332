"""The peer: etcd (Debian's ``etcd-server``) on loopback, driven through its
HTTP/JSON gateway by the same load generator.

Example::

    with Etcd(workdir) as etcd:
        etcd.grant_leases(first=1000, count=10_000, ttl=600)
        run_wrk(etcd.url, op="etcd_keepalive", keys=10_000, ...,
                env={"BENCH_LEASE": "1000"})

acquire is a create-if-absent transaction with a lease (compare
``create_revision == 0``, put with the lease), on a key never used before so
that every request is a granted acquire and a write; renew is a lease
keep-alive. Leases get IDs chosen here so the wrk script can name them.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from pathlib import Path

from bench.procs import Proc, free_port


def etcd_path() -> str | None:
    return shutil.which("etcd")


class Etcd(Proc):
    def __init__(self, workdir: Path) -> None:
        exe = etcd_path()
        if exe is None:
            raise RuntimeError("etcd is not installed: apt-get install etcd-server")
        port, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
        data = workdir / "etcd-data"
        cmd = [
            exe, "--name", "bench", "--data-dir", str(data),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"bench={peer_url}", "--log-level", "warn",
        ]  # fmt: skip
        super().__init__(cmd, port=port, health="/health", log=workdir / "etcd.log")

    def call(self, conn: http.client.HTTPConnection, path: str, body: dict[str, object]) -> dict:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"etcd {path}: {resp.status} {data[:200]!r}")
        out: dict = json.loads(data)
        return out

    def grant_leases(self, *, first: int, count: int, ttl: int, parallel: int = 8) -> None:
        """Grant leases ``first .. first + count - 1`` (IDs chosen by us)."""
        errors: list[BaseException] = []

        def run(part: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                for i in range(part, count, parallel):
                    got = self.call(conn, "/v3/lease/grant", {"ID": first + i, "TTL": ttl})
                    if got.get("error"):
                        raise RuntimeError(f"lease grant: {got}")
            except BaseException as exc:
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=run, args=(p,)) for p in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def check(self, lease: int) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            return self.call(conn, "/v3/lease/keepalive", {"ID": lease})
        finally:
            conn.close()
