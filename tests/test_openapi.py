"""The committed API contract is what the app serves."""

from __future__ import annotations

from pathlib import Path

import yaml

from leaderelection_service.openapi import document

REPO = Path(__file__).resolve().parents[1]


def test_openapi_yaml_is_what_the_app_serves() -> None:
    committed = yaml.safe_load((REPO / "openapi.yaml").read_text())
    assert committed == document(), (
        "openapi.yaml differs from the app's schema; regenerate it with: "
        "leaderelection openapi > openapi.yaml"
    )
