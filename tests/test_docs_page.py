"""``/docs`` works offline: every asset it loads is served by the service itself.

The first test needs no browser: it reads the page's HTML, finds every URL it
references (``src``, ``href``, ``url:`` in the inline script) and asserts each
is local and answers 200. The second renders the page in headless Chromium,
with every request to another origin recorded (and aborted, as it would be
offline), and waits for the operations to be listed.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support.procs import ServiceProcess

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


def referenced(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


def test_docs_references_only_local_assets_that_answer(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = referenced(page.text)
    assert {"/openapi.json"} < set(urls), urls  # the document, plus the Swagger UI assets
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/docs loads {url} from another host"
        answer = http.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
    js = [u for u in urls if u.endswith(".js")]
    assert js and "SwaggerUIBundle" in http.get(js[0]).text
    assert "validator.swagger.io" not in page.text


@pytest.mark.browser
def test_docs_renders_the_operations_offline(
    browser: Any,
    service: ServiceProcess,
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    elsewhere: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(service.url + "/"):
            r.continue_()
        else:  # what an offline machine gets
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(service.url + "/docs")
    acquire = page.locator(".opblock-summary-path", has_text="/v1/leases/{key}/acquire")
    expect(acquire.first).to_be_visible(timeout=20_000)
    assert page.locator(".opblock").count() >= 6
    assert elsewhere == [] and errors == []
