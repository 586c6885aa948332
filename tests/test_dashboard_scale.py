"""The dashboard over more keys than it watches, in a real headless Chromium.

25,000 keys on PostgreSQL (copied from one acquired row by one ``INSERT …
SELECT generate_series``, as ``bench/million.py`` does): the page draws the
first page from the listing, and once the stream's replay passes
``WATCH_CAP`` (20,000) keys it watches only the shown rows' common prefix,
says so in the summary, and stays live there. The first-row time over a
million keys is the benchmark's to measure (docs/scaling.md); here the
behaviour is held.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from support.procs import ServiceProcess

pytestmark = pytest.mark.browser

KEYS = 25_000


def _copy_seed(url: str, keys: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'leaderelection_leases' "
                "ORDER BY ordinal_position"
            )
        ]
        rest = ", ".join(c for c in cols if c != "lease_key")
        conn.execute(
            f"INSERT INTO leaderelection_leases (lease_key, {rest}) "
            f"SELECT 'n' || lpad(i::text, 6, '0'), {rest} FROM leaderelection_leases, "
            "generate_series(0, %s) AS i WHERE lease_key = 'seed'",
            (keys - 1,),
        )


def test_over_many_keys_the_page_watches_what_it_shows(
    browser: Any, postgres_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with (
        ServiceProcess(postgres_url, log_path=tmp_path / "svc.log") as svc,
        httpx.Client(base_url=svc.url, timeout=30) as http,
    ):
        assert http.post("/v1/leases/seed/acquire", json={"holder": "h", "ttl": 3600}).is_success
        _copy_seed(postgres_url, KEYS)
        page = browser.new_page(viewport={"width": 1200, "height": 640})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(svc.url + "/")
        expect(page.locator('tr[data-key="n000000"] .holder')).to_have_text("h")
        summary = page.locator("#summary")
        # The first 200 rows (n000000 … n000199) share "n000": 1,000 keys.
        expect(summary).to_contain_text("watching those under “n000”", timeout=60_000)
        expect(summary).to_contain_text("1000 leases: 1000 held", timeout=30_000)
        expect(page.locator("tr.lease")).to_have_count(200)
        expect(page.locator("#conn")).to_have_attribute("data-connects", "2")
        # Live on the narrowed stream.
        lease = http.get("/v1/leases/n000005").json()
        r = http.post(
            "/v1/leases/n000005/release",
            json={"holder": lease["holder"], "fencing_token": lease["fencing_token"]},
        )
        assert r.status_code == 200
        expect(page.locator('tr[data-key="n000005"] .badge')).to_have_text("released")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        # Typing a prefix watches that one, whole (n024000 … n024099).
        page.fill("#prefix", "n0240")
        expect(summary).to_have_text("100 leases: 100 held, 0 expired, 0 released")
    assert errors == []
