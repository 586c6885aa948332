"""Fixtures shared by the whole suite.

``service``: a real ``leaderelection serve`` process on a free loopback port,
on the file backend in a fresh directory.

``lease_backend``: an opened ``LeaseBackend`` for every backend in
``support.backends.BACKENDS`` (the contract suite runs once per backend).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend
from support.procs import ServiceProcess

pytest_plugins = [
    "support.backends",
    "support.browser",
    "support.electors",
    "support.gcs",
    "support.sql_backends",
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def service(data_dir: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(data_dir.as_uri(), log_path=tmp_path / "service.log")
    with svc:
        yield svc


@pytest.fixture(scope="module")
def module_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def module_service(module_data_dir: Path) -> Iterator[ServiceProcess]:
    """One service for a whole module, for tests that never share a key."""
    svc = ServiceProcess(module_data_dir.as_uri(), log_path=module_data_dir / "service.log")
    with svc:
        yield svc


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def lease_backend(backend_url: str) -> AsyncIterator[LeaseBackend]:
    backend = open_backend(backend_url, Settings(backend_url=backend_url))
    try:
        yield backend
    finally:
        await backend.close()
