"""``--server`` and ``--token``: how a client command reaches the service.

Example::

    leaderelection status --server http://leases.internal:8080 --token "$TOKEN"
    LEADERELECTION_SERVER=http://leases.internal:8080 leaderelection status

Flags win over the environment (``LEADERELECTION_SERVER``,
``LEADERELECTION_TOKEN``); without either the service on this host's loopback
port 8080 is used.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "LEADERELECTION_SERVER"
TOKEN_ENV = "LEADERELECTION_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=None,
        help=f"service URL (env {SERVER_ENV}; default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"API token sent as 'Authorization: Bearer …' (env {TOKEN_ENV})",
    )


def server(args: argparse.Namespace) -> str:
    url: str = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    return url.rstrip("/")


def token(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None


def headers(args: argparse.Namespace) -> dict[str, str]:
    t = token(args)
    return {"Authorization": f"Bearer {t}"} if t else {}


def http_client(args: argparse.Namespace, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=server(args), headers=headers(args), timeout=timeout)


class CommandError(Exception):
    """A failure to report in one line on stderr (no stack trace), with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe(response: httpx.Response) -> str:
    """One line for an error answer: its contract code and message when it has them."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return f"{response.status_code} {body['error']}: {body.get('message', '')}"
    return f"{response.status_code} {response.reason_phrase}"
