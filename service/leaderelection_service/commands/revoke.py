"""``leaderelection revoke KEY``: end a lease's current term now, whoever holds it.

Example::

    $ leaderelection revoke cron-nightly --token "$ADMIN_TOKEN"
    revoked cron-nightly: host-a-4242-9f1c's term (token 7) ended

For an operator whose leader is wedged but still renewing: the holder's next
renew is answered ``lease_lost`` (so an elector steps down and campaigns
again), watchers get a ``revoked`` event, and the next acquire begins a new
term with the next fencing token. It needs an ``admin`` token (any caller when
the service has no token file). Revoking a lease that its holder already
released changes nothing and says so; one already revoked stays so.

Exit status: 0 revoked (or nothing left to revoke); 1 the key was never
acquired, the token may not revoke, or the service cannot be reached; 2 a
key that no service would accept.
Rejected: a ``--force`` release by holder name (the holder and its token are
not the operator's to know; revoke needs neither).
"""

from __future__ import annotations

import argparse
import re
import sys

import httpx

from leaderelection_service.commands import connection

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # records.KEY_PATTERN (no server import)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connection.add_arguments(parser)
    parser.add_argument("key", help="the lease to revoke")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if KEY_RE.fullmatch(args.key) is None:  # it goes into the URL path: never "../" or "?"
        print(f"leaderelection revoke: not a key: {args.key!r}", file=sys.stderr)
        return 2
    with connection.http_client(args) as client:
        try:
            response = client.post(f"/v1/leases/{args.key}/revoke", json={})
        except httpx.HTTPError as exc:
            print(f"leaderelection revoke: cannot reach {client.base_url}: {exc}", file=sys.stderr)
            return 1
    if response.status_code != 200:
        print(f"leaderelection revoke: {connection.describe(response)}", file=sys.stderr)
        return 1
    lease = response.json()
    whose = f"{lease['holder']}'s term (token {lease['fencing_token']})"
    if lease["state"] == "released":
        print(f"nothing to revoke: {lease['key']}: {whose} was released by its holder")
    else:
        print(f"revoked {lease['key']}: {whose} ended")
    return 0
