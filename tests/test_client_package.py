"""The client package as users get it: its public names, strict types, thin deps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import leaderelection
from support.blocked_imports import run_without
from support.procs import REPO, ServiceProcess

PUBLIC = [
    "AsyncLeaderElector",
    "AsyncLeaseClient",
    "AsyncWatch",
    "BackendUnavailable",
    "Config",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "LeaderElector",
    "Leadership",
    "Lease",
    "LeaseClient",
    "LeaseError",
    "LeaseEvent",
    "LeaseHeld",
    "LeaseLost",
    "LeaseNotFound",
    "LimitMismatch",
    "RequestTimeout",
    "ServiceError",
    "Slot",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "Watch",
    "__version__",
]


# the exceptions whose names do not end in "Error"
ERRORS = [
    "BackendUnavailable",
    "Forbidden",
    "LeaseHeld",
    "LeaseLost",
    "LeaseNotFound",
    "LimitMismatch",
    "RequestTimeout",
    "Unauthorized",
]


def test_public_names_are_pinned() -> None:
    assert sorted(leaderelection.__all__) == PUBLIC
    for name in PUBLIC:
        if name == "__version__":
            continue  # tests/test_version.py checks it against pyproject.toml
        obj = getattr(leaderelection, name)
        # each name is the class of that name from one of the package's own modules
        assert isinstance(obj, type) and obj.__name__ == name, name
        assert obj.__module__.startswith("leaderelection."), (name, obj.__module__)
    errors = [n for n in PUBLIC if n.endswith("Error") or n in ERRORS]
    for name in errors:
        assert issubclass(getattr(leaderelection, name), Exception), name


def test_module_docstrings_open_with_an_example() -> None:
    modules = ["client", "elector", "async_elector", "config", "errors", "lease", "watch"]
    for name in modules:
        doc = __import__(f"leaderelection.{name}", fromlist=["_"]).__doc__ or ""
        assert "Example::" in doc.split("\n\n", 2)[1], f"leaderelection.{name}"


def test_mypy_strict_passes_on_the_client() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "client/leaderelection"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert out.returncode == 0, out.stdout + out.stderr


BLOCKED = [
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "google",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
    "leaderelection_service",
]

FRESH = textwrap.dedent(
    """
    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{{name}} was importable")

    from leaderelection import Config, LeaderElector, LeaseClient

    with LeaseClient({url!r}) as client:
        elector = LeaderElector(client, "fresh", config=Config(term=2, renew=0.5, retry=0.3))
        with elector:
            assert elector.wait_for_leadership(20), "not elected"
            token = elector.lease.fencing_token
        assert not client.get("fresh").held, "stop() did not release"
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok", token)
    """
)


def test_client_works_where_server_libraries_cannot_be_imported(service: ServiceProcess) -> None:
    out = run_without(BLOCKED, FRESH.format(url=service.url))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "ok 1"
