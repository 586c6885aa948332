"""One version, reported the same way everywhere.

The number lives in pyproject.toml alone; the package reads it from the
installed metadata, and the service, the CLI, the OpenAPI document and the
changelog must all agree with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version

import httpx
import yaml

import leaderelection
import leaderelection_service
from support.procs import REPO


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def test_package_reports_the_pyproject_version() -> None:
    # A mismatch here means the installed metadata is stale: reinstall (./dev does it).
    assert version("leaderelection") == project_version()
    assert leaderelection_service.__version__ == project_version()
    assert leaderelection.__version__ == project_version()


def test_cli_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "leaderelection_service.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"leaderelection {project_version()}"


def test_healthz_reports_the_version(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok", "version": project_version()}


def test_openapi_document_carries_the_version() -> None:
    doc = yaml.safe_load((REPO / "openapi.yaml").read_text())
    assert doc["info"]["version"] == project_version()


def test_changelog_latest_release_is_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' release heading"
    assert releases[0] == project_version()
    assert text.index("## [Unreleased]") < text.index(f"## [{releases[0]}]")
