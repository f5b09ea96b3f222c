"""The plan's background in a browser (issue 21, point 7): the example yard's drawn plan
lies under its posts where its control points say, at 1366x768 and 390x844; map tiles
are drawn only because this site's file names a tile URL (a local tile server here:
nothing is fetched from outside); the image goes to the site's supervisors only, as an
image that runs no script."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from floodkit import shot, sideways_overflow
from test_dashboard import (
    PASSWORD,
    ROOT,
    WAIT_MS,
    _cli,
    _need_chromium,
    chromium,
    serving,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

YARD = ROOT / "examples" / "yard"
QUAY = ROOT / "examples" / "quay" / "site.yaml"
# A 1x1 grey PNG: what the local tile server answers for every tile.
TILE = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010800000000"
                     "3a7e9b550000000a49444154789c63e80000000101005f2a7c1d0000000049454e44ae426082")


class _Tiles(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(TILE)))
        self.end_headers()
        self.wfile.write(TILE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def tiles() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tiles: str) -> Iterator[str]:
    _need_chromium()
    tmp = tmp_path_factory.mktemp("background")
    data = tmp / "data"
    text = (YARD / "site.yaml").read_text("utf-8")
    with_tiles = text.replace(
        "  image: yard-plan.svg\n",
        f"  image: yard-plan.svg\n  tiles: {tiles}/tiles/{{z}}/{{x}}/{{y}}.png\n"
        "  attribution: Local test tiles\n", 1)
    assert with_tiles != text
    site = tmp / "site.yaml"
    site.write_text(with_tiles, "utf-8")
    (tmp / "yard-plan.svg").write_bytes((YARD / "yard-plan.svg").read_bytes())
    pw = {"COVERWATCH_PASSWORD": PASSWORD}
    _cli("users", "add", "control", "--roles", "supervisor", data_dir=data, env=pw)
    _cli("--site", "quay-depot", "users", "add", "quay-sup", "--roles", "supervisor",
         data_dir=data, env=pw)
    with serving(tmp, [site, QUAY], data) as url:
        yield url


def _login(browser: Any, base: str, user: str, viewport: tuple[int, int], path: str) -> Any:
    page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}
                               ).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    return page


@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)])
def test_the_drawn_plan_lies_under_the_posts(base: str, viewport: tuple[int, int]) -> None:
    _Tiles.asked.clear()
    with chromium() as browser:
        page = _login(browser, base, "control", viewport, "/control?site=harbour-yard")
        page.locator("#plan .post[data-post=main-gate] .centre").wait_for()
        page.locator("#plan image.bg-image").wait_for(state="attached")
        page.wait_for_function("() => document.querySelectorAll('#plan .bg-tile').length > 0")
        page.locator("#plan").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        size = f"{viewport[0]}x{viewport[1]}"
        shot(page, f"control-plan-background-{size}.png")
        # Pixel (240, 560) of the 960x740 drawing is the main gate; (800, 320) the
        # service gate (the site file's control points).
        image = page.locator("#plan image.bg-image").bounding_box()
        assert image is not None and image["width"] > 100
        for post, (u, v) in (("main-gate", (240, 560)), ("service-gate", (800, 320))):
            c = page.locator(f"#plan .post[data-post={post}] .centre").bounding_box()
            assert c is not None
            x, y = c["x"] + c["width"] / 2, c["y"] + c["height"] / 2
            assert abs(image["x"] + u / 960 * image["width"] - x) < 2, post
            assert abs(image["y"] + v / 740 * image["height"] - y) < 2, post
        # The image came from this server, as an image; the tiles from the tile URL the
        # site file names, and only from it.
        href = page.locator("#plan image.bg-image").get_attribute("href")
        assert href == "/api/v1/sites/harbour-yard/site/background"
        res = page.request.get(base + href)
        assert res.status == 200 and res.headers["content-type"] == "image/svg+xml"
        assert "sandbox" in res.headers["content-security-policy"]
        assert res.headers["x-content-type-options"] == "nosniff"
        assert _Tiles.asked and all(re.fullmatch(r"/tiles/\d+/\d+/\d+\.png", p)
                                    for p in _Tiles.asked)
        assert "Local test tiles" in page.inner_text("#plan .plan-attribution")
        if viewport[0] < 600:
            assert sideways_overflow(page) == 0


def test_the_image_goes_to_the_sites_supervisors_only(base: str) -> None:
    with chromium() as browser:
        page = _login(browser, base, "quay-sup", (1366, 768), "/control?site=quay-depot")
        page.locator("#plan image.bg-image").wait_for(state="attached")
        page.wait_for_timeout(500)
        shot(page, "control-plan-background-quay-1366x768.png")  # three control points
        own = page.request.get(base + "/api/v1/sites/quay-depot/site/background")
        assert own.status == 200 and b"Quay Depot (fictional)" in own.body()
        other = page.request.get(base + "/api/v1/sites/harbour-yard/site/background")
        assert other.status == 403
        # No tiles for a site whose file names none: nothing fetched from outside.
        assert page.locator("#plan .bg-tile").count() == 0
        anonymous = browser.new_context().request.get(
            base + "/api/v1/sites/quay-depot/site/background")
        assert anonymous.status == 401
