"""The dashboard shows a pending transfer, in a real headless Chromium (support/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import _watch_console

from support.procs import ServiceProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def dash(data_dir: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        data_dir.as_uri(),
        extra_args=("--watch-poll-interval", "0.2"),
        log_path=tmp_path / "service.log",
    )
    with svc:
        yield svc


def test_dashboard_shows_the_pending_successor_until_its_term_begins(
    browser: Any, dash: ServiceProcess
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=dash.url, timeout=10) as http:
        held = http.post("/v1/leases/web.leader/acquire", json={"holder": "web-v1", "ttl": 600})
        assert held.is_success
        page = browser.new_page(viewport={"width": 1200, "height": 640})
        errors = _watch_console(page)
        page.goto(dash.url + "/")
        row = page.locator('tr[data-key="web.leader"]')
        expect(row.locator(".holder")).to_have_text("web-v1")
        expect(row).not_to_have_attribute("data-successor", "")
        # An operator names the successor: the term goes on, the row says to whom it goes.
        assert http.post("/v1/leases/web.leader/transfer", json={"to": "web-v2"}).is_success
        expect(row.locator(".holder")).to_have_text("web-v1 → web-v2")
        expect(row.locator(".holder .successor")).to_have_attribute("title", "handed to web-v2")
        expect(row.locator(".badge")).to_have_text("held")
        expect(page.locator("#announce")).to_contain_text("web-v1 is to hand over to web-v2")
        # The holder steps down: released, still reserved for the successor.
        release = {"holder": "web-v1", "fencing_token": 1}
        assert http.post("/v1/leases/web.leader/release", json=release).is_success
        expect(row.locator(".badge")).to_have_text("released")
        expect(row.locator(".holder")).to_have_text("web-v1 → web-v2")
        expect(page.locator("#announce")).to_contain_text("handed by web-v1 to web-v2")
        # The successor's term begins: the pending transfer is gone.
        took = http.post("/v1/leases/web.leader/acquire", json={"holder": "web-v2", "ttl": 600})
        assert took.is_success
        expect(row.locator(".holder")).to_have_text("web-v2")
        expect(row.locator(".token")).to_have_text("2")
        row.locator(".history-toggle").click()
        expect(page.locator("tr.history li").nth(1)).to_contain_text("transferred")
        page.close()
    assert errors == []
