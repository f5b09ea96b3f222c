"""The login page's redirect in a real browser (issue 19, F8): ``next`` goes
through the browser's own URL parser, which drops tabs and newlines and reads a
backslash as a slash, so only a target that is still on this origin *after*
parsing is followed; anything else lands on ``/``.

On the old code ``/login?next=/%09/evil.example/x`` sent the browser to
``http://evil.example/x`` (the check looked at the text before parsing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from test_dashboard import SITE, _need_chromium, chromium, serving

# The tab, newline and backslash forms, and their friends. Each must stay home.
HOSTILE = [
    "/\t/evil.example/x", "/\n/evil.example/x", "/\r/evil.example/x", "/\\/evil.example/x",
    "/\\\\evil.example/x", "/\t\\evil.example/x", "//evil.example/x", "/.//evil.example/x",
    "https://evil.example/x", "javascript:alert(1)", "/%2F%2Fevil.example", " /\t/evil.example",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("edge")
    with serving(tmp, SITE, tmp / "data") as url:
        yield url


@pytest.fixture(scope="module")
def browser(base: str) -> Iterator[Any]:
    with chromium() as b:
        yield b


def _after_login(browser: Any, base: str, next_value: str) -> tuple[str, list[str]]:
    """Where the browser goes after a successful sign-in on ``/login?next=…``, and any
    request it tried to send off this origin (blocked here, never resolved)."""
    context = browser.new_context()
    foreign: list[str] = []
    origin = urlsplit(base).netloc

    def guard(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc != origin:
            foreign.append(url)
            route.abort()
        elif urlsplit(url).path == "/api/v1/login":  # the sign-in itself is not under test
            route.fulfill(status=200, content_type="application/json", body="{}")
        elif route.request.is_navigation_request() and urlsplit(url).path != "/login":
            # Where the page sent the browser, kept as it is (no session to bounce it back).
            route.fulfill(status=200, content_type="text/html", body="<p>arrived</p>")
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{base}/login?next={quote(next_value, safe='')}")
        page.fill("#username", "anyone")
        page.fill("#password", "anything-at-all")
        with page.expect_navigation():
            page.click("button[type=submit]")
        return page.url, foreign
    finally:
        context.close()


@pytest.mark.parametrize("next_value", HOSTILE, ids=[repr(h) for h in HOSTILE])
def test_login_never_redirects_off_the_origin(browser: Any, base: str, next_value: str) -> None:
    url, foreign = _after_login(browser, base, next_value)
    assert foreign == [], foreign
    assert urlsplit(url).scheme == "http" and urlsplit(url).netloc == urlsplit(base).netloc, url


def test_login_still_goes_where_the_user_was_headed(browser: Any, base: str) -> None:
    url, foreign = _after_login(browser, base, "/control?site=x#top")
    assert foreign == [] and url == f"{base}/control?site=x#top"
