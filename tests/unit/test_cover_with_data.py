"""The share of a rule's active time covered leaves out the spans without data (purged):
the report, the API and the evidence PDF never count purged time as covered or lapsed."""

from __future__ import annotations

from coverwatch.engine.results import RuleStats, TimelinePoint
from coverwatch.evidence.window import cover_with_data


def _stats(*points: tuple[int, str]) -> RuleStats:
    return RuleStats("gate", "staffed", 1, timeline=[TimelinePoint(t, s, 0) for t, s in points])


def test_purged_time_is_left_out_of_the_share() -> None:
    st = _stats((0, "covered"), (10, "lapsed"), (20, "covered"), (30, "inactive"))
    assert cover_with_data(st, 0, 40, []) == (100.0 * 20 / 30, 0)
    # The lapse lies in a purged span: nothing is known there, and 100 % of the rest.
    assert cover_with_data(st, 0, 40, [{"start_us": 10, "end_us": 20}]) == (100.0, 10)
    # A span cut at the window's edges counts only inside it.
    assert cover_with_data(st, 5, 25, [{"start_us": 0, "end_us": 8}]) == (100.0 * 7 / 17, 3)


def test_a_window_entirely_purged_has_no_share() -> None:
    st = _stats((0, "lapsed"))
    assert cover_with_data(st, 0, 40, [{"start_us": 0, "end_us": 40}]) == (None, 40)
    assert cover_with_data(_stats((0, "inactive")), 0, 40, []) == (None, 0)
