"""What to do when a test needs something that is not there.

Locally the test is skipped with a message saying what is missing and how to
start it; under ``CI=true`` the run fails with the same message, so CI never
passes by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str) -> None:
    """Skip (locally) or fail (CI) because ``what`` is missing; ``how`` fixes it."""
    message = f"{what} is not available. {how}"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def tool(name: str, what: str, how: str) -> str:
    """The path of executable ``name`` on PATH; ``missing(what, how)`` where there is none."""
    path = shutil.which(name)
    if path is None:
        missing(what, how)
    assert path is not None
    return path
