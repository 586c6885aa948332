"""``leaderelection`` where only the client is installed (no ``server`` extra).

The interpreter is the suite's own, with a finder in front that answers every
server library as Python answers a package that is not installed
(``ModuleNotFoundError`` with its name): tests/support/blocked_imports.py,
as in tests/test_client_package.py.
"""

from __future__ import annotations

import subprocess

import pytest

from support.blocked_imports import run_without

SERVER_LIBRARIES = [
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "pymysql",
    "google",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
    "sse_starlette",
    "yaml",
]

CLIENT_ONLY = """
from leaderelection_service.cli import main

sys.argv = ["leaderelection", *{argv!r}]
sys.exit(main())
"""
HINT = "install them with: pip install 'leaderelection[server]'"


def client_only(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_without(SERVER_LIBRARIES, CLIENT_ONLY.format(argv=list(argv)))


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["serve", "--port", "9000"],
        ["serve", "--help"],
        ["migrate", "--backend-url", "sqlite:////tmp/never.db"],
        ["openapi"],
    ],
)
def test_server_commands_say_how_to_install_the_server_extra(argv: list[str]) -> None:
    out = client_only(*argv)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # one line, no traceback
    assert lines[0].startswith(f"leaderelection {argv[0]}: the server libraries are not installed")
    assert HINT in lines[0] and "no module named" in lines[0]
    assert out.stdout == ""


def test_client_commands_still_work_there() -> None:
    """The finder does block: the client commands, which need httpx alone, are unaffected."""
    out = client_only("status", "--help")
    assert out.returncode == 0 and "--prefix" in out.stdout, out.stderr
    out = client_only("run", "--key", "k", "--hold-after", "2m", "--help")
    assert out.returncode == 0 and "--no-wait" in out.stdout, out.stderr
