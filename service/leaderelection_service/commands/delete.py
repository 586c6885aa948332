"""``leaderelection delete``: remove a key, or clean up keys whose last term ended long ago.

Example::

    $ leaderelection delete job-41 --token "$ADMIN_TOKEN"
    deleted job-41 (last token 7, released)
    $ leaderelection delete --older-than 24h --prefix job- --dry-run
    would delete job-17 (last token 3, expired 30h ago)
    1 key would be deleted, 0 skipped

``delete KEY`` removes one key whose lease is not held (released, revoked or
expired): the service answers 409 ``lease_held`` while it is held, and a
later acquire of the key starts above every fencing token it had (the token
floor, docs/contract.md). ``--older-than DURATION --prefix P`` lists the keys
under ``P`` a page at a time and deletes each whose lease is not held and
whose last term ended (its ``expires_at``: the release, the revoke or the
lapse) at least ``DURATION`` ago on the service's clock; ``--dry-run`` only
says which. A key that was taken meanwhile is refused by the service (409)
and skipped, and one deleted meanwhile by someone else is reported as gone.
Both need an ``admin`` token (any caller when the service has no token file).

Exit status: 0 deleted (bulk: every chosen key deleted or already gone, or
nothing to delete, or a dry run); 1 one key: never acquired (404), held
(409), or the token may not delete; either: the service cannot be reached or
refused the listing; 2 bad arguments (a key no service accepts, no KEY and
no ``--older-than``, both); 3 bulk: some keys were skipped because they became
held.
Rejected: deleting held keys with ``--force`` (revoke first: an operator's two
deliberate steps), and deleting by a list the command computed once before
any delete (each key is decided by the service at its own delete).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from leaderelection_service.commands import connection
from leaderelection_service.commands.durations import duration
from leaderelection_service.commands.revoke import KEY_RE

SKIPPED = 3
PAGE = 500


def pages(client: httpx.Client, prefix: str) -> Iterator[dict[str, Any]]:
    """The leases under ``prefix``, a page at a time (each page read when it is needed)."""
    params: dict[str, str | int] = {"prefix": prefix, "limit": PAGE}
    while True:
        try:
            response = client.get("/v1/leases", params=params)
        except httpx.HTTPError as exc:
            raise connection.CommandError(f"cannot reach {client.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise connection.CommandError(f"listing: {connection.describe(response)}")
        page = response.json()
        yield from page["leases"]
        if not page.get("next_cursor"):
            return
        params["cursor"] = page["next_cursor"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connection.add_arguments(parser)
    parser.add_argument("key", nargs="?", help="the key to delete (its lease must not be held)")
    parser.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="delete every key under --prefix whose last term ended this long ago",
    )
    parser.add_argument("--prefix", default=None, help="the keys --older-than looks at")
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted")
    parser.set_defaults(func=main)


def _fail(message: str, status: int = 1) -> int:
    print(f"leaderelection delete: {message}", file=sys.stderr)
    return status


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ago(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.0f}h"
    if seconds >= 120:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def ended_ago(lease: dict[str, Any]) -> float | None:
    """Seconds since the lease's last term ended, on the service's clock; None while held."""
    if lease["held"]:
        return None
    return (_time(lease["server_time"]) - _time(lease["expires_at"])).total_seconds()


def _delete(client: httpx.Client, key: str) -> httpx.Response:
    return client.delete(f"/v1/leases/{key}")


def main(args: argparse.Namespace) -> int:
    if args.key is not None:
        if args.older_than is not None or args.prefix is not None:
            return _fail("give a KEY, or --older-than with --prefix, not both", 2)
        if KEY_RE.fullmatch(args.key) is None:  # it goes into the URL path
            return _fail(f"not a key: {args.key!r}", 2)
        return _one(args)
    if args.older_than is None or args.prefix is None:
        return _fail("give a KEY, or --older-than DURATION --prefix P", 2)
    return _bulk(args)


def _one(args: argparse.Namespace) -> int:
    with connection.http_client(args) as client:
        if args.dry_run:
            try:
                response = client.get(f"/v1/leases/{args.key}")
            except httpx.HTTPError as exc:
                return _fail(f"cannot reach {client.base_url}: {exc}")
            if response.status_code != 200:
                return _fail(connection.describe(response))
            lease = response.json()
            if lease["held"]:
                return _fail(f"{args.key} is held by {lease['holder']}: it would not be deleted")
            print(
                f"would delete {args.key} (last token {lease['fencing_token']}, {lease['state']})"
            )
            return 0
        try:
            response = _delete(client, args.key)
        except httpx.HTTPError as exc:
            return _fail(f"cannot reach {client.base_url}: {exc}")
    if response.status_code != 200:
        return _fail(connection.describe(response))
    lease = response.json()
    print(f"deleted {lease['key']} (last token {lease['fencing_token']}, {lease['state']})")
    return 0


def _bulk(args: argparse.Namespace) -> int:
    deleted = skipped = 0
    verb = "would delete" if args.dry_run else "deleted"
    with connection.http_client(args) as client:
        try:
            for lease in pages(client, args.prefix):
                ago = ended_ago(lease)
                if ago is None or ago < args.older_than:
                    continue
                key, what = lease["key"], f"last token {lease['fencing_token']}"
                what += f", {lease['state']} {_ago(ago)} ago"
                if args.dry_run:
                    print(f"{verb} {key} ({what})")
                    deleted += 1
                    continue
                try:
                    response = _delete(client, key)
                except httpx.HTTPError as exc:
                    return _fail(f"cannot reach {client.base_url}: {exc}")
                if response.status_code == 200:
                    print(f"{verb} {key} ({what})")
                    deleted += 1
                elif response.status_code == 409:
                    now = response.json().get("lease") or {}
                    print(f"skipped {key}: held again by {now.get('holder', '?')}")
                    skipped += 1
                elif response.status_code == 404:
                    print(f"gone {key}: already deleted")
                else:
                    return _fail(f"{key}: {connection.describe(response)}")
        except connection.CommandError as exc:
            return _fail(str(exc), exc.exit_code)
    keys = "key" if deleted == 1 else "keys"
    done = "would be deleted" if args.dry_run else "deleted"
    print(f"{deleted} {keys} {done}, {skipped} skipped")
    return SKIPPED if skipped else 0
