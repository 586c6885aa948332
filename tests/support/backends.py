"""Backend URLs for the one contract suite, one fixture per kind of backend.

``lease_backend`` (in conftest) is parametrized over ``BACKENDS``; each name
maps to a fixture ``<name>_url`` that yields a URL of a fresh, empty backend
(a new directory, database table, bucket) and cleans up after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ["memory", "file", "gcs", "postgres", "sqlite", "mysql"]


@pytest.fixture
def memory_url() -> Iterator[str]:
    yield "memory://"


@pytest.fixture
def file_url(tmp_path: Path) -> Iterator[str]:
    d = tmp_path / "file-backend"
    d.mkdir()
    yield d.as_uri()


@pytest.fixture
def gcs_url(gcs_bucket: str) -> Iterator[str]:
    # gcs_bucket (support.gcs) also points this process's GCS clients at the emulator.
    yield f"gs://{gcs_bucket}/leases"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
