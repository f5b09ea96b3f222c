"""Where, in words (domain/where.py): bearing and distance to the nearest post."""

from __future__ import annotations

import pytest

from coverwatch.domain.site import Post
from coverwatch.domain.time import US_PER_S
from coverwatch.domain.where import compass, where_from, where_words

POSTS = (
    Post(id="j1", name="Gate J1", at=(0.0, 0.0), rules=()),
    Post(id="yard", name="Yard", area=((100.0, 0.0), (120.0, 0.0), (120.0, 20.0), (100.0, 20.0)),
         rules=()),
)


@pytest.mark.parametrize(("dx", "dy", "word"), [
    (0, 1, "N"), (1, 1, "NE"), (1, 0, "E"), (1, -1, "SE"), (0, -1, "S"), (-1, -1, "SW"),
    (-1, 0, "W"), (-1, 1, "NW"), (0.3, 1, "N"),
])
def test_compass(dx: float, dy: float, word: str) -> None:
    assert compass(dx, dy) == word


def test_near_a_point_post_with_accuracy_and_age() -> None:
    w = where_from(12.7, 12.7, POSTS, accuracy_m=12, fix_us=0, now_us=40 * US_PER_S)
    assert w.text == "18 m NE of Gate J1 (±12 m, 40 s old)"
    assert (w.post, w.direction, w.distance_m) == ("j1", "NE", 18.0)


def test_inside_an_area_post_reads_at_it_and_missing_accuracy_is_not_zero() -> None:
    assert where_from(110, 10, POSTS).text == "at Yard (accuracy unknown)"
    assert where_from(110, 10, POSTS, accuracy_m=0).text == "at Yard (accuracy unknown)"


def test_unknown_position() -> None:
    assert where_words(None, POSTS).text == "position unknown"
    assert where_from(float("nan"), 0, POSTS).text == "position unknown"


def test_from_a_stored_position() -> None:
    w = where_words({"x": 110, "y": 40, "accuracy_m": 8, "time": "2030-01-01T08:00:00Z"},
                    POSTS, now_us=w_now())
    assert w.text == "20 m N of Yard (±8 m, 1 min old)"


def w_now() -> int:
    from coverwatch.domain.time import parse_time
    return parse_time("2030-01-01T08:01:00Z")
