"""``/docs``: Swagger UI for the served OpenAPI document, its assets served by the app.

Example::

    open http://127.0.0.1:8080/docs

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so it was a blank
page offline or wherever the service's users cannot reach the internet. Here
the page is FastAPI's (``get_swagger_ui_html``) with every asset URL local:
the files come from the ``swagger-ui-bundle-v2`` package (Swagger UI's dist
files, the ones npm's ``swagger-ui-dist`` ships) and are served under
``/static/swagger-ui/`` beside the dashboard's, public like them (the same
for everyone, nothing about leases). The page and ``/openapi.json`` stay
behind the token gate. The online validator badge is off: it is a request to
another host.

Rejected: dropping ``/docs`` (the README sends newcomers there, and it is the
quickest way to try a call); copying the 1.5 MB bundle into this repository
(every upgrade a hand copy); ``fastapi-offline`` (it constructs the app
itself, and where its files live is not its public API).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/static/swagger-ui"
"""Under ``/static/``: public, like the dashboard's files (``api.security``)."""


async def docs(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to return from
        swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
    )


def install(app: FastAPI) -> None:
    """Add ``/docs`` and its assets; before the dashboard's ``/static`` mount, which would
    otherwise answer ``/static/swagger-ui/…`` first (404)."""
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(directory=Path(str(swagger_ui_path))), name="swagger-ui")
