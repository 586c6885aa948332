"""``leaderelection status``: the current leases, as a table, as JSON, or live.

Example::

    $ leaderelection status --prefix cron
    KEY           HOLDER             TOKEN  TIME LEFT  STATE     VALUE
    cron-nightly  host-a-4242-9f1c       7       8.2s  held      10.0.0.7:8443
    cron-weekly   host-b-17-03aa         3          -  released  -

    leaderelection status --json            # {"server": URL, "leases": [records]}
    leaderelection status --watch           # redraw every second until Ctrl-C
    leaderelection status --watch --json    # one JSON document per line, per poll

Time left is ``expires_at - server_time`` of the same answer: the service's
clock alone, so this host's clock being wrong changes nothing. The state is
the record's ``state`` as the service decided it: ``held``, ``released``
(freed by its holder) or ``expired`` (not renewed). The value is what the
holder published (``-``: none; its first 40 characters, escaped if it holds
control characters; ``--json`` has all of it). A lease being handed on shows
its successor after the holder: ``web-v1→web-v2`` (one word, for ``awk``).

Exit status: 0; 1 when the service cannot be reached or answers an error
(``--watch`` keeps polling through errors and shows them instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

import httpx

from leaderelection_service.commands import connection
from leaderelection_service.commands.connection import CommandError

PAGE = 1000
CLEAR = "\x1b[H\x1b[2J"
COLUMNS = ("KEY", "HOLDER", "TOKEN", "TIME LEFT", "STATE", "VALUE")
VALUE_SHOWN = 40
"""Characters of a value the table shows (all of it is in ``--json``)."""
RIGHT_ALIGNED = {"TOKEN", "TIME LEFT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connection.add_arguments(parser)
    parser.add_argument("--prefix", default="", help="only keys starting with this")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    parser.add_argument("--watch", action="store_true", help="poll and redraw until Ctrl-C")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with --watch (1)"
    )
    parser.set_defaults(func=main)


def fetch(client: httpx.Client, prefix: str) -> list[dict[str, Any]]:
    """Every lease whose key starts with ``prefix``, following the pages."""
    return list(_pages(client, prefix))


def _pages(client: httpx.Client, prefix: str) -> Iterator[dict[str, Any]]:
    params: dict[str, str | int] = {"prefix": prefix, "limit": PAGE}
    while True:
        try:
            response = client.get("/v1/leases", params=params)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach {client.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise CommandError(f"{client.base_url} answered {connection.describe(response)}")
        page = response.json()
        yield from page["leases"]
        if not page.get("next_cursor"):
            return
        params["cursor"] = page["next_cursor"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def state(lease: dict[str, Any]) -> str:
    """``held``, ``released`` or ``expired``: the record's ``state``, decided by the service."""
    return str(lease["state"])


def time_left(lease: dict[str, Any]) -> float | None:
    """Seconds until the grant lapses, on the service's clock; None if not held."""
    if not lease["held"]:
        return None
    left = (_time(lease["expires_at"]) - _time(lease["server_time"])).total_seconds()
    return max(0.0, left)


def shown_value(value: str | None) -> str:
    """The value on one table line: ``-`` for none, control characters escaped, long ones cut."""
    if value is None:
        return "-"
    text = value.encode("unicode_escape").decode("ascii") if not value.isprintable() else value
    text = text or '""'
    return text if len(text) <= VALUE_SHOWN else text[: VALUE_SHOWN - 1] + "…"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def _row(key: str, lease: dict[str, Any]) -> tuple[str, ...]:
    return (
        key,
        # a pending transfer: the successor after an arrow, one word
        lease["holder"] + (f"→{lease['successor']}" if lease.get("successor") else ""),
        str(lease["fencing_token"]),
        _seconds(time_left(lease)),
        state(lease),
        shown_value(lease.get("value")),
    )


def rows_of(lease: dict[str, Any]) -> list[tuple[str, ...]]:
    """One line for a plain lease; a semaphore key (``limit``): a line per slot held,
    its key as ``KEY[held/limit]``, or its record's line when none is held."""
    if "limit" not in lease:
        return [_row(lease["key"], lease)]
    holders = lease.get("holders") or []
    key = f"{lease['key']}[{len(holders)}/{lease['limit']}]"
    if not holders:
        return [_row(key, lease)]
    at = lease["server_time"]
    return [_row(key, {**slot, "held": True, "server_time": at}) for slot in holders]


def table(leases: list[dict[str, Any]]) -> str:
    rows = [COLUMNS] + [row for lease in leases for row in rows_of(lease)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if name in RIGHT_ALIGNED else cell.ljust(w)
            for name, cell, w in zip(COLUMNS, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    if not leases:
        lines.append("(no leases)")
    return "\n".join(lines)


def render(server: str, leases: list[dict[str, Any]], as_json: bool, compact: bool) -> str:
    if as_json:
        doc = {"server": server, "leases": leases}
        return json.dumps(doc) if compact else json.dumps(doc, indent=2)
    return table(leases)


def watch(args: argparse.Namespace, client: httpx.Client, out: TextIO) -> int:
    redraw = out.isatty() and not args.json
    while True:
        try:
            text = render(connection.server(args), fetch(client, args.prefix), args.json, True)
        except CommandError as exc:
            if args.json:
                text = json.dumps({"server": connection.server(args), "error": str(exc)})
            else:
                text = f"leaderelection status: {exc}"
        stamp = time.strftime("%H:%M:%S")
        if redraw:
            out.write(f"{CLEAR}{connection.server(args)}  prefix={args.prefix!r}  {stamp}\n\n")
            out.write(text + "\n")
        else:
            out.write(text + ("\n" if args.json else "\n\n"))
        out.flush()
        time.sleep(args.interval)


def main(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("leaderelection status: --interval must be > 0", file=sys.stderr)
        return 2
    with connection.http_client(args) as client:
        try:
            if args.watch:
                return watch(args, client, sys.stdout)
            leases = fetch(client, args.prefix)
        except CommandError as exc:
            print(f"leaderelection status: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 0
    print(render(connection.server(args), leases, args.json, compact=False))
    return 0
