"""Flood grouping (domain/incidents.py): the outage, the 20-post lapse and the flag switch
each make one incident, told once per level; an SOS is never grouped."""

from __future__ import annotations

from coverwatch.domain.alerts import Escalation
from coverwatch.domain.incidents import IncidentBook, incident_message
from coverwatch.domain.time import US_PER_S

T0 = 1_700_000_000 * US_PER_S
TARGETS = ("role:supervisor",)


def step(i: int, *, level: int = 0, lapse_start: int, due_at: int, at: int,
         kind: str = "lapse", count: int = 0) -> Escalation:
    return Escalation(f"{kind}-{i:03d}", level, TARGETS, due_at, at, kind, f"post-{i:02d}",
                      "cover", lapse_start, due_at, count, 1)


def test_outage_68_lapses_one_incident_one_message_per_level() -> None:
    # The server was out 24 s: on its first tick every post's stale fix has lapsed.
    now = T0 + 40 * US_PER_S
    steps = [step(i, lapse_start=T0 + i * 1000, due_at=T0 + 10 * US_PER_S + i * 1000, at=now,
                  count=1) for i in range(68)]
    book = IncidentBook()
    solo, grouped = book.fold(steps)
    assert solo == []
    assert len(grouped) == 1 and len(book.incidents()) == 1
    inc = grouped[0].incident
    assert inc.cause == "outage" and len(inc.members) == 68
    assert "stale data" in inc.detail and "consequential" in inc.detail
    # Level 2 falls due for every member later: still one message.
    later = [step(i, level=1, lapse_start=T0 + i * 1000, due_at=now + 60 * US_PER_S,
                  at=now + 60 * US_PER_S) for i in range(68)]
    solo, grouped = book.fold(later)
    assert solo == [] and [g.level for g in grouped] == [1]
    title, body = incident_message(grouped[0])
    assert title.startswith("INCIDENT: 68 alerts at 68 posts (outage)")
    assert "and 58 more" in body and body.endswith("Level 2.")


def test_twenty_post_signal_loss_over_several_ticks() -> None:
    book = IncidentBook()
    sent = 0
    for tick in range(4):  # lapses spread over 4 ticks, 5 posts each
        now = T0 + (20 + tick) * US_PER_S
        steps = [step(tick * 5 + j, lapse_start=now - 10 * US_PER_S - j * 300_000,
                      due_at=now, at=now) for j in range(5)]
        solo, grouped = book.fold(steps)
        sent += len(solo) + len(grouped)
    assert sent == 1
    (inc,) = book.incidents()
    assert inc.cause == "signal-loss" and len(inc.members) == 20


def test_flag_switch_every_lapse_starts_at_once() -> None:
    flag_at = T0 + 5 * US_PER_S
    steps = [step(i, lapse_start=flag_at, due_at=flag_at + 30 * US_PER_S,
                  at=flag_at + 30 * US_PER_S, count=1) for i in range(12)]
    solo, grouped = IncidentBook().fold(steps)
    assert solo == [] and len(grouped) == 1
    assert grouped[0].incident.cause == "flag-switch"


def test_two_unrelated_lapses_stay_alone_and_sos_is_never_grouped() -> None:
    book = IncidentBook()
    a = step(1, lapse_start=T0, due_at=T0 + 30 * US_PER_S, at=T0 + 30 * US_PER_S)
    b = step(2, lapse_start=T0 + 400 * US_PER_S, due_at=T0 + 430 * US_PER_S,
             at=T0 + 430 * US_PER_S)
    assert book.fold([a]) == ([a], [])
    assert book.fold([b]) == ([b], [])
    sos = [step(i, kind="sos", lapse_start=T0, due_at=T0, at=T0) for i in range(5)]
    solo, grouped = book.fold(sos)
    assert solo == sos and grouped == []


def test_alerts_told_alone_before_the_flood_join_it_and_their_level_counts_as_told() -> None:
    book = IncidentBook(min_members=3)
    first = step(1, lapse_start=T0, due_at=T0 + 30 * US_PER_S, at=T0 + 30 * US_PER_S)
    assert book.fold([first]) == ([first], [])
    rest = [step(i, lapse_start=T0, due_at=T0 + 31 * US_PER_S, at=T0 + 31 * US_PER_S)
            for i in (2, 3, 4)]
    solo, grouped = book.fold(rest)
    assert solo == [] and grouped == []  # level 1 was told (about the first)
    (inc,) = book.incidents()
    assert inc.members[0] == first.alert_id and len(inc.members) == 4


def test_shelving_needs_a_reason_and_a_set_time_and_never_holds_an_sos() -> None:
    import pytest

    from coverwatch.domain.shelving import ShelfBook, ShelvingError, make_shelf

    with pytest.raises(ShelvingError, match="reason"):
        make_shelf("post:p01", 30, "  ", "sam", T0)
    with pytest.raises(ShelvingError, match="minutes"):
        make_shelf("post:p01", 0, "works on the gate", "sam", T0)
    with pytest.raises(ShelvingError, match="minutes"):
        make_shelf("post:p01", 9 * 60, "works on the gate", "sam", T0)
    book = ShelfBook([make_shelf("post:p01", 30, "works on the gate", "sam", T0)])
    assert book.holding("lapse-1", "lapse", "p01", T0 + 60 * US_PER_S) is not None
    assert book.holding("lapse-1", "lapse", "p01", T0 + 31 * 60 * US_PER_S) is None  # ended
    assert book.holding("sos-1", "sos", "p01", T0 + 60 * US_PER_S) is None
    assert book.holding("lapse-2", "lapse", "p02", T0 + 60 * US_PER_S) is None
