"""An auditor downloads an evidence pack from the audit page; it verifies on its own.
The audit page names subjects in words, shows site times and the anchored verify result."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import (  # the dashboard's running server and browser
    PASSWORD,
    SHOTS,
    Server,
    _login,
    browser,
    server,
)

from coverwatch.evidence.pack import verify_pack

__all__ = ["browser", "server"]

DESKTOP = {"width": 1366, "height": 900}


def test_auditor_downloads_a_pack_from_the_audit_page(server: Server, browser: Any,
                                                     tmp_path: Path) -> None:
    page = _login(browser, server, "aud", "/audit", DESKTOP)
    page.wait_for_url(re.compile(r"/audit$"))
    page.locator("#tz-note", has_text="Europe/London").wait_for()
    page.click("#anchor")
    page.locator("#verify-result", has_text="Chain intact").wait_for()
    assert "Last anchor" in page.inner_text("#verify-result")
    # Users created from the CLI show as "user …" in words, filterable by subject kind.
    page.select_option("#filter-subject", "user")
    page.locator("td", has_text="user aud").first.wait_for()
    page.fill("#ev-since", "2020-01-01T00:00:00")
    page.fill("#ev-until", "2020-01-01T01:00:00")
    with page.expect_download() as info:
        page.click("#ev-download")
    pack = tmp_path / "pack.zip"
    info.value.save_as(pack)
    page.screenshot(path=str(SHOTS / "audit-evidence-1366x900.png"), full_page=True)
    with httpx.Client(base_url=server.base, timeout=60) as c:
        assert c.post("/api/v1/login", json={"username": "aud", "password": PASSWORD}
                      ).status_code == 200
        pem = c.get("/api/v1/audit/public-key").text
    import base64

    from cryptography.hazmat.primitives import serialization

    raw = serialization.load_pem_public_key(pem.encode()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    check = verify_pack(pack.read_bytes(), (base64.b64encode(raw).decode(),))
    assert check.ok, check.problems


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_supervisor_downloads_todays_daily_report(server: Server, browser: Any,
                                                  tmp_path: Path) -> None:
    page = _login(browser, server, "sup", "/control", DESKTOP)
    page.wait_for_url(re.compile(r"/control$"))
    page.locator("#daily-link").wait_for()
    page.wait_for_function(
        "document.getElementById('daily-link').href.includes('date=')")
    with page.expect_download() as info:
        page.click("#daily-link")
    out = tmp_path / "daily.pdf"
    info.value.save_as(out)
    assert out.read_bytes().startswith(b"%PDF")
    with page.expect_download() as info:
        page.click("#daily-csv-link")
    csv_out = tmp_path / "daily.csv"
    info.value.save_as(csv_out)
    assert csv_out.read_text().startswith("section,")
