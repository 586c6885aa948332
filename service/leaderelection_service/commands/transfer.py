"""``leaderelection transfer KEY --to HOLDER``: hand a lease to a chosen successor.

Example::

    $ leaderelection transfer web-leader --to web-v2-7f9c --token "$ADMIN_TOKEN"
    web-leader: web-v1-2a4b (token 7) is handed to web-v2-7f9c

For a rolling deploy or maintenance, when the new leader should take over
now rather than after a crash or a ttl. The current term goes on until its
holder learns of it: its next renew is answered ``lease_lost`` naming the
successor, so an elector steps down and releases, and the successor's
elector (following the watch stream) acquires at once; for one ttl after
the term ends no one else may. The lease is never freed early, so there is
never a moment with two leaders (I1). It needs an ``admin`` token (any
caller when the service has no token file). A holder hands on its own term
with ``elector.transfer(to)`` instead.

Exit status: 0 handed on (or already so); 1 the key was never acquired, is
not held, the token may not transfer, or the service cannot be reached; 2 a
key or holder name that no service would accept.
Rejected: waiting here until the successor leads (the command would then
depend on the holder's renew interval; ``leaderelection status --watch``
shows it).
"""

from __future__ import annotations

import argparse
import sys

import httpx

from leaderelection_service.commands import connection
from leaderelection_service.commands.revoke import KEY_RE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connection.add_arguments(parser)
    parser.add_argument("key", help="the lease to hand on")
    parser.add_argument("--to", required=True, help="the successor's holder name")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if KEY_RE.fullmatch(args.key) is None:  # it goes into the URL path: never "../" or "?"
        print(f"leaderelection transfer: not a key: {args.key!r}", file=sys.stderr)
        return 2
    if not args.to or len(args.to) > 256 or not args.to.isprintable():
        print(f"leaderelection transfer: not a holder name: {args.to!r}", file=sys.stderr)
        return 2
    with connection.http_client(args) as client:
        try:
            response = client.post(f"/v1/leases/{args.key}/transfer", json={"to": args.to})
        except httpx.HTTPError as exc:
            print(
                f"leaderelection transfer: cannot reach {client.base_url}: {exc}", file=sys.stderr
            )
            return 1
    if response.status_code != 200:
        print(f"leaderelection transfer: {connection.describe(response)}", file=sys.stderr)
        return 1
    lease = response.json()
    print(
        f"{lease['key']}: {lease['holder']} (token {lease['fencing_token']}) "
        f"is handed to {lease['successor']}"
    )
    return 0
