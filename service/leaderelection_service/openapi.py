"""The committed API contract: ``openapi.yaml`` is ``render()`` of the app.

Regenerate with ``leaderelection openapi > openapi.yaml``.
"""

from __future__ import annotations

from typing import Any

import yaml

from leaderelection_service.app import create_app
from leaderelection_service.settings import Settings


def document() -> dict[str, Any]:
    app = create_app(Settings(backend_url="memory://"))
    return app.openapi()


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)
