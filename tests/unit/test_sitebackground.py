"""The site file's ``background`` (formats/_siteplanimage.py): the image is found
beside the site file, checked by its content, placed by its control points; every
problem names the file, line and field."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from coverwatch.errors import SiteFileError
from coverwatch.formats.sitefile import SiteDocument, load_site_document

SITE = """\
site: s
{origin}posts:
  - id: gate
    at: [0, 0]
    rules: [{{id: r, need: 1, within_m: 10}}]
background:
{background}"""

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300">'
       '<rect width="400" height="300" fill="#eee"/></svg>')


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\0\0\0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


POINTS = """\
  points:
    - {pixel: [0, 300], site: [-50, -40]}
    - {pixel: [400, 0], site: [50, 35]}
"""


def _load(tmp_path: Path, background: str, origin: str = "") -> SiteDocument:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(origin=origin, background=background))
    return load_site_document(site)


Found = list[tuple[int | None, str | None, str]]


def _problems(tmp_path: Path, background: str, origin: str = "") -> Found:
    with pytest.raises(SiteFileError) as info:
        _load(tmp_path, background, origin)
    site = str(tmp_path / "site.yaml")
    assert all(p.path == site for p in info.value.problems)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_an_svg_beside_the_site_file_is_placed_by_two_points(tmp_path: Path) -> None:
    (tmp_path / "plan.svg").write_text(SVG)
    doc = _load(tmp_path, "  image: plan.svg\n" + POINTS)
    bg = doc.background
    assert bg is not None
    assert (bg.media_type, bg.width, bg.height) == ("image/svg+xml", 400, 300)
    assert bg.file == str(tmp_path / "plan.svg")
    assert bg.transform is not None and bg.transform.apply(200, 150) == pytest.approx((0, -2.5))


def test_a_png_in_a_subfolder_is_read_for_its_size(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "plan.png").write_bytes(_png(400, 300))
    doc = _load(tmp_path, "  image: img/plan.png\n" + POINTS)
    bg = doc.background
    assert bg is not None
    assert (bg.media_type, bg.width, bg.height) == ("image/png", 400, 300)


def test_a_missing_image_names_file_line_and_field(tmp_path: Path) -> None:
    [(line, field, message)] = _problems(tmp_path, "  image: gone.svg\n" + POINTS)
    assert (line, field) == (7, "background.image")
    assert "'gone.svg': no such file" in message


@pytest.mark.parametrize(("image", "content", "says"), [
    ("plan.gif", b"GIF89a", "a .png or .svg file"),
    ("plan.png", b"<svg/>", "not a PNG image"),
    ("plan.svg", b"<html><script>x</script></html>", "not an SVG image"),
    ("plan.svg", b"<svg", "not well-formed SVG"),
    ("plan.svg", b'<!DOCTYPE svg [<!ENTITY a "aa">]><svg width="1" height="1">&a;</svg>',
     "DOCTYPE"),
    ("plan.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "gives no size"),
])
def test_an_image_that_is_not_what_it_says_is_refused(tmp_path: Path, image: str,
                                                      content: bytes, says: str) -> None:
    (tmp_path / image).write_bytes(content)
    [(line, field, message)] = _problems(tmp_path, f"  image: {image}\n" + POINTS)
    assert (line, field) == (7, "background.image") and says in message


@pytest.mark.parametrize("image", ["../plan.svg", "/etc/plan.svg", "a/../../plan.svg"])
def test_an_image_outside_the_site_files_folder_is_refused(tmp_path: Path, image: str) -> None:
    [(_, field, message)] = _problems(tmp_path, f"  image: {image}\n" + POINTS)
    assert field == "background.image" and "relative to the site file" in message


@pytest.mark.parametrize(("points", "field", "says"), [
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n", "background.points",
     "two or three control points, got 1"),
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n    - {pixel: [0, 0], site: [9, 9]}\n",
     "background.points", "same pixel"),
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n    - {pixel: [9, 0], site: [9, 0]}\n"
     "    - {pixel: [18, 0], site: [0, 9]}\n", "background.points", "pixels lie on one line"),
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n    - {pixel: [900, 0], site: [9, 9]}\n",
     "background.points[1]", "outside the image (400 x 300 px"),
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n    - {pixel: [9, 9]}\n",
     "background.points[1].site", "missing required key 'site'"),
    ("  points:\n    - {pixel: [0, 0], site: [0, 0]}\n    - {pixel: [9, x], site: [9, 9]}\n",
     "background.points[1].pixel[1]", "expected a number"),
])
def test_bad_control_points_name_the_field(tmp_path: Path, points: str, field: str,
                                           says: str) -> None:
    (tmp_path / "plan.svg").write_text(SVG)
    problems = _problems(tmp_path, "  image: plan.svg\n" + points)
    assert any(f == field and says in m and line and line >= 7 for line, f, m in problems), \
        problems


def test_an_image_needs_points_and_points_need_an_image(tmp_path: Path) -> None:
    (tmp_path / "plan.svg").write_text(SVG)
    [(_, field, message)] = _problems(tmp_path, "  image: plan.svg\n")
    assert field == "background.points" and "missing required key 'points'" in message
    [(_, field, message)] = _problems(tmp_path, POINTS)
    assert field == "background.points" and "give one" in message


def test_map_tiles_need_an_origin_and_a_url_template(tmp_path: Path) -> None:
    tiles = "  tiles: https://tiles.example.org/{z}/{x}/{y}.png\n"
    [(line, field, message)] = _problems(tmp_path, tiles)
    assert (line, field) == (7, "background.tiles") and "'origin'" in message
    origin = "origin: {lat: 12.5, lon: -32.5}\n"
    doc = _load(tmp_path, tiles + "  attribution: Tiles (fictional)\n", origin)
    bg = doc.background
    assert bg is not None
    assert bg.tiles == "https://tiles.example.org/{z}/{x}/{y}.png" and bg.transform is None
    [(_, field, message)] = _problems(tmp_path, "  tiles: https://t.example.org/{z}.png\n",
                                      origin)
    assert field == "background.tiles" and "{z}, {x} and {y}" in message
    [(_, field, _)] = _problems(tmp_path, "  tiles: file:///{z}/{x}/{y}\n", origin)
    assert field == "background.tiles"


def test_the_example_sites_place_their_drawn_plans() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    for name, image, points in (("yard", "yard-plan.svg", 2), ("quay", "quay-plan.svg", 3)):
        doc = load_site_document(root / name / "site.yaml")
        bg = doc.background
        assert bg is not None and bg.image == image and len(bg.points) == points
        assert bg.tiles is None  # nothing is fetched from outside by default
        gate = doc.site.post("main-gate")
        [pixel_at_gate] = [p.pixel for p in bg.points if p.site == gate.at]
        assert bg.transform is not None
        assert bg.transform.apply(*pixel_at_gate) == pytest.approx(gate.at)
