"""Dispatch suggestions are marked when sending the officer would open another gap."""

from __future__ import annotations

from coverwatch.domain.dispatchmarks import dispatch_marks

STATES = [
    {"post": "j1", "rule": "cover", "state": "lapsed", "count": 0, "need": 1},
    {"post": "yard", "rule": "armed", "state": "covered", "count": 1, "need": 1},
    {"post": "dock", "rule": "cover", "state": "covered", "count": 3, "need": 1},
]
NAMES = {"j1": "Gate J1", "yard": "Yard", "dock": "Dock"}


def test_own_post_lapsed_and_hard_rule_are_marked() -> None:
    c = {"officer": "A1", "rostered": "post j1", "now_at": ["yard/armed"]}
    assert dispatch_marks(c, STATES, NAMES) == [
        "their own post Gate J1 is lapsed",
        "needed at Yard (armed: 1 of 1, none to spare)"]


def test_a_free_officer_or_one_with_cover_to_spare_is_not_marked() -> None:
    assert dispatch_marks({"rostered": None, "now_at": []}, STATES, NAMES) == []
    assert dispatch_marks({"rostered": "patrol perimeter", "now_at": ["dock/cover"]},
                          STATES, NAMES) == []
