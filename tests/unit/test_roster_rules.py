"""Rosters, qualifications and briefing rules (coverwatch.domain.briefing), and the
roster/qualification CSV readers."""

from __future__ import annotations

import pytest

from coverwatch.domain.briefing import (
    Qualification,
    Shift,
    assignment_problems,
    counted_capabilities,
    governed_capabilities,
    qualification_expiries,
    roster_boundaries,
    unbriefed,
)
from coverwatch.domain.time import parse_time
from coverwatch.formats.roster import (
    BriefingInputError,
    parse_qualifications_csv,
    parse_roster_csv,
)
from coverwatch.formats.sitefile import load_site
from serverkit import YARD

H = 3600 * 1_000_000
T0 = parse_time("2030-01-01T08:00:00Z")
SITE = load_site(YARD)


def test_only_governed_capabilities_need_a_valid_qualification() -> None:
    quals = [Qualification("A", "armed", T0 + H)]
    governed = governed_capabilities(SITE, [*quals, Qualification("A", "forklift", T0 + H)])
    assert governed == {"armed"}  # forklift is named by no rule
    claimed = {"armed", "first-aid"}
    assert counted_capabilities(claimed, "A", T0, governed, quals) == claimed
    assert counted_capabilities(claimed, "A", T0 + H, governed, quals) == {"first-aid"}
    assert counted_capabilities(claimed, "B", T0, governed, quals) == {"first-aid"}
    # Without any record, nothing is governed: capabilities count as claimed.
    assert counted_capabilities(claimed, "B", T0, frozenset(), []) == claimed


def test_valid_from_is_inclusive_and_valid_until_exclusive() -> None:
    q = Qualification("A", "armed", T0 + H, T0)
    assert not q.valid_at(T0 - 1) and q.valid_at(T0) and q.valid_at(T0 + H - 1)
    assert not q.valid_at(T0 + H)
    assert q.valid_throughout(T0, T0 + H) and not q.valid_throughout(T0 - 1, T0 + H)


def test_assignment_needs_each_capability_for_the_whole_shift() -> None:
    shift = Shift(0, "A", T0, T0 + 12 * H, post="main-gate")
    (problem,) = assignment_problems(SITE, shift, [])
    assert problem.startswith("A is not qualified armed for the whole shift")
    assert "hold no armed qualification" in problem
    short = [Qualification("A", "armed", T0 + 6 * H)]
    (problem,) = assignment_problems(SITE, shift, short)
    assert "valid until 2030-01-01T14:00:00Z" in problem
    assert assignment_problems(SITE, shift, [Qualification("A", "armed", T0 + 12 * H)]) == []
    assert assignment_problems(SITE, Shift(0, "A", T0, T0 + H, post="store"), []) == []
    assert assignment_problems(SITE, Shift(0, "A", T0, T0 + H, patrol="perimeter"), []) == []
    assert assignment_problems(SITE, Shift(0, "A", T0, T0 + H, post="nowhere"), []) == [
        "no post 'nowhere' in site harbour-yard"]


def test_shift_needs_an_end_after_its_start_and_one_place() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        Shift(0, "A", T0, T0)
    with pytest.raises(ValueError, match="exactly one of post or patrol"):
        Shift(0, "A", T0, T0 + H)


def test_roster_boundaries_join_back_to_back_shifts() -> None:
    shifts = [Shift(1, "A", T0, T0 + H, post="store"), Shift(2, "A", T0 + H, T0 + 2 * H,
                                                             post="store")]
    got = [(b.t, b.on) for b in roster_boundaries(shifts, T0, T0 + 3 * H)]
    assert got == [(T0, True), (T0 + H, True), (T0 + 2 * H, False)]
    assert roster_boundaries(shifts, T0 + 1, T0 + H) == []


def test_expiries_in_a_window() -> None:
    q = [Qualification("A", "armed", T0 + H), Qualification("B", "armed", T0 + 2 * H)]
    assert [x.officer for x in qualification_expiries(q, T0, T0 + H + 1)] == ["A"]


def test_unbriefed_from_duty_start_or_after_a_change_in_the_shift() -> None:
    shifts = [Shift(1, "A", T0, T0 + 8 * H, post="store")]
    current = {"store": ("v2", T0 - H)}
    # Never acknowledged: unbriefed from when they went on duty (not before the shift).
    (u,) = unbriefed(T0 + 10, shifts, {"A": T0 - 5}, current, {}, 600_000_000)
    assert (u.officer, u.post, u.version, u.since, u.alert_at) == ("A", "store", "v2", T0, T0)
    assert unbriefed(T0 + 10, shifts, {"A": T0}, current,
                     {("A", "store"): frozenset({"v2"})}, 600_000_000) == []
    # Not on duty, or not rostered: nothing.
    assert unbriefed(T0 + 10, shifts, {}, current, {}, 600_000_000) == []
    assert unbriefed(T0 + 10, shifts, {"B": T0}, current, {}, 600_000_000) == []
    # Orders changed during the duty of someone who had read the old ones: a grace.
    changed = {"store": ("v3", T0 + H)}
    acks = {("A", "store"): frozenset({"v2"})}
    assert unbriefed(T0 + H + 599_999_999, shifts, {"A": T0}, changed, acks, 600_000_000) == []
    (u,) = unbriefed(T0 + H + 600_000_000, shifts, {"A": T0}, changed, acks, 600_000_000)
    assert (u.since, u.alert_at) == (T0 + H, T0 + H + 600_000_000)


def test_roster_csv_reads_posts_and_patrols_and_reports_lines() -> None:
    text = ("officer,post,start,end,patrol\n"
            "A,store,2030-01-01T08:00:00Z,2030-01-01T20:00:00Z,\n"
            "B,,2030-01-01,2030-01-02,perimeter\n")
    a, b = parse_roster_csv(text, "Europe/London")
    assert (a.officer, a.post, a.start, a.end) == ("A", "store", T0, T0 + 12 * H)
    assert (b.patrol, b.start) == ("perimeter", parse_time("2030-01-01T00:00:00Z"))
    with pytest.raises(BriefingInputError) as e:
        parse_roster_csv("officer,post,start,end\nA,store,08:00,2030-01-01T20:00:00Z\n")
    assert e.value.problems[0].startswith("line 2:")
    with pytest.raises(BriefingInputError, match="missing column end"):
        parse_roster_csv("officer,post,start\n")


def test_a_date_as_expiry_means_through_that_day_in_the_site_zone() -> None:
    (q,) = parse_qualifications_csv("officer,qualification,valid_until\nA,armed,2027-01-31\n",
                                    "Europe/London")
    assert q.valid_until == parse_time("2027-02-01T00:00:00Z")
    (q,) = parse_qualifications_csv("officer,qualification,valid_until\nA,armed,2027-07-31\n",
                                    "Europe/London")
    assert q.valid_until == parse_time("2027-07-31T23:00:00Z")  # BST
