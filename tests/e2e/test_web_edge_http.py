"""The web edge over HTTP (issue 19, deliverable 7): the session cookie is
``Secure`` when the request came over https (TLS here, or a trusted proxy that
says so, never a client that merely claims it) or with ``--secure-cookies``; a
header value built from input is never split by a newline: an evidence request
whose ``since`` holds one is a 422 before any pack is built or audited.

On the old code the cookie never carried ``Secure`` unless the setting was on,
and the evidence request built the pack, audited the export and then failed to
send its reply (uvicorn refuses a header with a newline: an empty response).
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from coverwatch.settings import Settings
from serverkit import PASSWORD, YARD, FakeClock, base_settings, live_server, running_server


def _login_cookie(url: str, headers: dict[str, str] | None = None) -> SimpleCookie:
    r = httpx.post(f"{url}/api/v1/login", json={"username": "ann", "password": PASSWORD},
                   headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(r.headers["set-cookie"])
    return cookie


def _serve(tmp: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    settings: Settings = base_settings(YARD, tmp / "data", **overrides)
    return live_server(settings, FakeClock())


@pytest.mark.parametrize(("trusted", "forwarded", "secure"), [
    ((), None, False),
    ((), "https", False),                         # a client's claim is not believed
    (("127.0.0.1",), "https", True),              # the proxy terminated TLS
    (("127.0.0.1",), "http", False),
    (("127.0.0.1",), "https, http", False),       # the nearest proxy saw plain http
    (("10.0.0.0/8",), "https", False),            # the peer is not a trusted proxy
], ids=["plain", "client-claims-https", "trusted-proxy-https", "trusted-proxy-http",
        "nearest-says-http", "untrusted-peer"])
def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy(
        tmp_path: Path, trusted: tuple[str, ...], forwarded: str | None, secure: bool) -> None:
    with _serve(tmp_path, trusted_proxies=trusted) as srv:
        srv.svc.store.create_user("ann", PASSWORD, ["supervisor"])
        headers = {} if forwarded is None else {"X-Forwarded-Proto": forwarded}
        morsel = _login_cookie(srv.url, headers)["cw_session"]
        assert bool(morsel["secure"]) is secure
        assert morsel["httponly"] and morsel["samesite"].lower() == "strict"


def test_secure_cookies_switch_marks_every_session_cookie(tmp_path: Path) -> None:
    with _serve(tmp_path, secure_cookies=True) as srv:
        srv.svc.store.create_user("ann", PASSWORD, ["supervisor"])
        assert _login_cookie(srv.url)["cw_session"]["secure"]


def test_a_request_over_tls_gets_a_secure_cookie(tmp_path: Path) -> None:
    with running_server(base_settings(YARD, tmp_path / "data")) as kit:
        kit.svc.store.create_user("ann", PASSWORD, ["supervisor"])
        kit.client.base_url = httpx.URL("https://testserver")  # the ASGI scheme is https
        r = kit.client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert "; secure" in r.headers["set-cookie"].lower()


def test_serve_has_a_secure_cookies_switch() -> None:
    from typer.testing import CliRunner

    from coverwatch.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--secure-cookies" in out


@pytest.mark.parametrize("since", ["\n2030-01-01T08:00:00Z", "2030-01\r\n-01T08:00:00Z",
                                   "\t2030-01-01T08:00:00Z"])
def test_an_evidence_request_with_a_newline_is_refused_before_any_work(
        tmp_path: Path, since: str) -> None:
    with running_server(base_settings(YARD, tmp_path / "data")) as k:
        auditor = k.user("ada", "auditor")
        k.advance(120)
        until = k.clock.iso(-30)
        before = [e.action for e in k.svc.store.audit_entries(limit=10_000)]
        r = k.request(auditor, "GET", "/api/v1/evidence", params={"since": since,
                                                                    "until": until})
        assert r.status_code == 422, (r.status_code, r.headers)
        assert "since" in r.json()["detail"] and "control character" in r.json()["detail"]
        after = [e.action for e in k.svc.store.audit_entries(limit=10_000)]
        assert "evidence.exported" not in after[len(before):]
        # A good request still gets its pack, named from the parsed time.
        r = k.request(auditor, "GET", "/api/v1/evidence",
                      params={"since": "2030-01-01T08:00:00Z", "until": until})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == (
            'attachment; filename="evidence-harbour-yard-2030-01-01.zip"')
