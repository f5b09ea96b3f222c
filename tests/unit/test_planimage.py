"""The plan image's control-point fit (domain/planimage.py): two points give a
similarity of an unmirrored image, three the affine map through them; points that
fix no map are refused with the reason."""

from __future__ import annotations

import math

import pytest

from coverwatch.domain.planimage import ControlPoint, fit_control_points


def _close(p: tuple[float, float], q: tuple[float, float]) -> bool:
    return math.isclose(p[0], q[0], abs_tol=1e-9) and math.isclose(p[1], q[1], abs_tol=1e-9)


def test_two_points_north_up_image_scales_and_flips_the_vertical() -> None:
    # 4 px per metre, pixel (240, 560) is the site origin: down in the image is south.
    fit = fit_control_points((ControlPoint((240, 560), (0, 0)),
                              ControlPoint((800, 320), (140, 60))))
    assert _close(fit.apply(240, 560), (0, 0))
    assert _close(fit.apply(800, 320), (140, 60))
    assert _close(fit.apply(0, 0), (-60, 140))  # top left is north-west
    assert _close(fit.apply(240, 600), (0, -10))  # 40 px down is 10 m south
    assert fit.as_list() == pytest.approx([0.25, 0, 0, -0.25, -60, 140])


def test_two_points_rotated_image_keeps_angles_and_one_scale() -> None:
    # An image drawn with north to its right: pixel right is south, pixel down is west.
    fit = fit_control_points((ControlPoint((0, 0), (0, 0)), ControlPoint((100, 0), (0, -50))))
    assert _close(fit.apply(100, 0), (0, -50))
    assert _close(fit.apply(0, 100), (-50, 0))
    assert _close(fit.apply(100, 100), (-50, -50))


def test_three_points_fit_an_affine_map_through_them() -> None:
    points = (ControlPoint((10, 20), (5, 7)), ControlPoint((300, 40), (100, 0)),
              ControlPoint((50, 250), (-3, -80)))
    fit = fit_control_points(points)
    for p in points:
        assert _close(fit.apply(*p.pixel), p.site)
    # Affine: the midpoint of two pixels goes to the midpoint of their site points.
    assert _close(fit.apply(155, 30), (52.5, 3.5))


def test_three_points_may_stretch_one_axis_more_than_the_other() -> None:
    fit = fit_control_points((ControlPoint((0, 0), (0, 100)), ControlPoint((100, 0), (50, 100)),
                              ControlPoint((0, 100), (0, 0))))
    assert fit.as_list() == pytest.approx([0.5, 0, 0, -1, 0, 100])


@pytest.mark.parametrize(("points", "why"), [
    ((((1, 2), (0, 0)),), "two or three"),
    ((((5, 5), (0, 0)), ((5, 5), (10, 10))), "same pixel"),
    ((((0, 0), (3, 3)), ((10, 10), (3, 3))), "same site point"),
    ((((0, 0), (0, 0)), ((10, 10), (5, 5)), ((20, 20), (0, 9))), "pixels lie on one line"),
    ((((0, 0), (0, 0)), ((10, 0), (5, 5)), ((0, 10), (10, 10))), "site points lie on one line"),
    ((((0, 0), (0, 0)),) * 4, "not 4"),
])
def test_points_that_fix_no_map_are_refused_saying_why(
    points: tuple[tuple[tuple[float, float], tuple[float, float]], ...], why: str,
) -> None:
    with pytest.raises(ValueError, match=why):
        fit_control_points(tuple(ControlPoint(p, s) for p, s in points))
