"""The dashboard in a 400 px wide window: labels stay on one line beside long values.

In the card layout each cell is its label (a ``::before`` pseudo-element)
beside its value; a long holder or key once squeezed the label until
"Holder" broke across two lines. The label's box is measured in Chromium
(its computed height, which is its text's: the cells align on the baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from support.procs import ServiceProcess

LONG_HOLDER = "ip-10-0-3-17.eu-west-1.compute.internal-48213-9f1c2ab7"
LONG_KEY = "payments.settlement.eu-west-1.nightly-reconciliation"

LABELS = """() => [...document.querySelectorAll('tr.lease > [data-label]')].map(cell => {
    const label = getComputedStyle(cell, '::before');
    return {
        key: cell.closest('tr').dataset.key,
        label: cell.dataset.label,
        height: parseFloat(label.height),
        line: parseFloat(label.lineHeight),
    };
})"""


def test_labels_stay_on_one_line_at_400_px(
    browser: Any,
    service: ServiceProcess,
    http: httpx.Client,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    for key, holder in [(LONG_KEY, "mailer-a"), ("mail.digest", LONG_HOLDER)]:
        r = http.post(f"/v1/leases/{key}/acquire", json={"holder": holder, "ttl": 300})
        assert r.is_success
    page = browser.new_page(viewport={"width": 400, "height": 800})
    page.goto(service.url + "/")
    expect(page.locator('tr[data-key="mail.digest"] .holder')).to_have_text(LONG_HOLDER)
    expect(page.locator(f'tr[data-key="{LONG_KEY}"] .holder')).to_have_text("mailer-a")
    page.screenshot(path=str(tmp_path / "dashboard-400.png"), full_page=True)
    labels = page.evaluate(LABELS)
    assert {x["label"] for x in labels} >= {"Key", "Holder", "Fencing token", "Time left"}
    rows: dict[str, list[str]] = {}
    for cell in labels:
        rows.setdefault(cell["key"], []).append(cell["label"])
    # both rows, each with every labelled cell (the same labels, in the same order)
    assert len(rows) == 2 and len({tuple(r) for r in rows.values()}) == 1
    assert len(next(iter(rows.values()))) >= 7
    broken = [x for x in labels if not x["height"] < 1.5 * x["line"]]
    assert broken == [], broken
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The case that broke the label is the one shown: the long holder wraps onto two lines.
    holder = page.locator('tr[data-key="mail.digest"] .holder').bounding_box()
    line = next(x["line"] for x in labels if x["label"] == "Holder")
    assert holder is not None and holder["height"] > 1.5 * line
