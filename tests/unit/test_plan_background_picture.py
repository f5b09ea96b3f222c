"""The planning page's site-plan picture draws the site's plan image under the posts and
routes (issue 21, point 7), as the control room does: an SVG drawn as shapes, a PNG as an
image, each placed by its control points; no image, or one that cannot be read, leaves the
picture without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coverwatch.domain.planimage import ControlPoint, PlanImage, fit_control_points
from coverwatch.domain.site import Site
from coverwatch.formats.planfile import load_plan
from coverwatch.formats.sitefile import load_site_document
from coverwatch.reports.planpictures import plot_site_plan
from coverwatch.reports.plans import PlanCheck, check_plan

Yard = tuple[Site, PlanCheck, PlanImage | None]
YARD = Path(__file__).resolve().parents[2] / "examples" / "yard"


@pytest.fixture(scope="module")
def yard() -> Yard:
    doc = load_site_document(YARD / "site.yaml")
    plan = load_plan(YARD / "plan-fixed.yaml", doc.site)
    return doc.site, check_plan(doc.site, plan, samples=50, hz=0.2), doc.background


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)


def _tinted(rgb: np.ndarray, plain: np.ndarray) -> float:
    """The share of the picture tinted magenta (green lower, red and blue as high) where
    the plain picture is not: the test's plan image under the map."""
    d = rgb - plain
    return float(((d[..., 1] < -40) & (d[..., 0] > -25) & (d[..., 2] > -25)).mean())


def _covering(file: Path, media_type: str) -> PlanImage:
    """A 100 x 100 px image laid over the yard, from (-100, -100) to (300, 300) m."""
    points = (ControlPoint((0, 100), (-100, -100)), ControlPoint((100, 0), (300, 300)))
    return PlanImage(image=file.name, file=str(file), media_type=media_type, width=100,
                     height=100, points=points, transform=fit_control_points(points))


def test_the_site_plan_picture_draws_an_svg_and_a_png_plan(
        yard: Yard, tmp_path: Path) -> None:
    site, check, _ = yard
    svg = tmp_path / "plan.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
                   '<g transform="translate(0, 0)"><rect width="100" height="100" '
                   'style="fill:#ff00ff"/></g></svg>', "utf-8")
    png = tmp_path / "plan.png"
    Image.new("RGB", (100, 100), (255, 0, 255)).save(png)
    plain = tmp_path / "plain.png"
    plot_site_plan(plain, site, check, 82.0)
    for image, media_type in ((svg, "image/svg+xml"), (png, "image/png")):
        out = tmp_path / f"with-{image.suffix[1:]}.png"
        plot_site_plan(out, site, check, 82.0, _covering(image, media_type))
        # Magenta under the whole map (faded, under the heat map and the routes): the
        # map is about half of the picture.
        assert _tinted(_pixels(out), _pixels(plain)) > 0.4, media_type
    # A plan image that cannot be read: the picture as it was, no error.
    gone = tmp_path / "broken.png"
    plot_site_plan(gone, site, check, 82.0,
                   _covering(tmp_path / "missing.svg", "image/svg+xml"))
    assert np.array_equal(_pixels(gone), _pixels(plain))


def test_the_yards_own_plan_is_drawn(yard: Yard,
                                     tmp_path: Path) -> None:
    site, check, background = yard
    assert background is not None and background.file is not None
    plain, drawn = tmp_path / "plain.png", tmp_path / "drawn.png"
    plot_site_plan(plain, site, check, 82.0)
    plot_site_plan(drawn, site, check, 82.0, background)
    changed = np.abs(_pixels(drawn) - _pixels(plain)).sum(axis=2) > 30
    assert changed.mean() > 0.1  # the pale drawn plan (yards, buildings) under the map
