"""Alert lifecycle, escalation policy and the alert book (pure, no clock)."""

from __future__ import annotations

import pytest

from coverwatch.domain.alertbook import AlertBook
from coverwatch.domain.alerts import (
    Alert,
    AlertLifecycleError,
    AlertState,
    Escalation,
    EscalationLevel,
    EscalationPolicy,
    UnknownAlertError,
    alert_id_for,
    format_duration,
    parse_target,
)
from coverwatch.domain.time import US_PER_S
from coverwatch.errors import CoverwatchError

S = US_PER_S
T0 = 1_700_000_000 * S  # lapse start
AT = T0 + 30 * S  # alert time: a 30 s grace period ran out

POLICY = EscalationPolicy(
    (
        EscalationLevel(0, ("role:supervisor",)),
        EscalationLevel(60, ("user:jsmith", "mailto://ops@example.org")),
        EscalationLevel(300, ("signed+https://hooks.example.org/coverwatch",)),
    )
)


def new_book() -> AlertBook:
    return AlertBook(POLICY)


def raise_alert(book: AlertBook, post: str = "north-gate", start: int = T0) -> Alert:
    return book.on_alert(post, "armed-cover", start, start + 30 * S, count=0, need=2)


# --- format_duration -------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.9, "0 s"),
        (45, "45 s"),
        (59.999, "59 s"),
        (60, "1 min"),
        (70, "1 min 10 s"),
        (750, "12 min 30 s"),
        (3600, "1 h"),
        (3600 + 5 * 60 + 59, "1 h 5 min"),
        (86_400 * 2 + 3 * 3600, "2 d 3 h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_format_duration_refuses_non_durations(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


# --- targets and policy ----------------------------------------------------


def test_parse_target_kinds() -> None:
    assert parse_target("role:supervisor") == ("role", "supervisor")
    assert parse_target("user:jsmith") == ("user", "jsmith")
    assert parse_target("json://127.0.0.1:8000/") == ("url", "json://127.0.0.1:8000/")
    assert parse_target("signed+https://h/p") == ("url", "signed+https://h/p")


@pytest.mark.parametrize("bad", ["supervisor", "role:", "team:x", "user: x", "://host", ""])
def test_parse_target_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_level_refuses_bad_values() -> None:
    with pytest.raises(ValueError):
        EscalationLevel(-1, ("role:supervisor",))
    with pytest.raises(ValueError):
        EscalationLevel(float("nan"), ("role:supervisor",))
    with pytest.raises(ValueError):
        EscalationLevel(0, ())
    with pytest.raises(ValueError):
        EscalationLevel(0, "role:supervisor")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EscalationLevel(0, ("nobody",))


def test_policy_delays_must_not_decrease() -> None:
    with pytest.raises(ValueError, match="level 1"):
        EscalationPolicy(
            (EscalationLevel(60, ("role:a",)), EscalationLevel(30, ("role:b",)))
        )
    # Equal delays are fine: two groups told at once.
    EscalationPolicy((EscalationLevel(0, ("role:a",)), EscalationLevel(0, ("role:b",))))


def test_level_due() -> None:
    assert POLICY.level_due(AT, AT - 1) == -1
    assert POLICY.level_due(AT, AT) == 0
    assert POLICY.level_due(AT, AT + 60 * S - 1) == 0
    assert POLICY.level_due(AT, AT + 60 * S) == 1
    assert POLICY.level_due(AT, AT + 10_000 * S) == 2
    assert EscalationPolicy(()).level_due(AT, AT + 10_000 * S) == -1


# --- lifecycle -------------------------------------------------------------


def test_full_lifecycle_records_who_and_when() -> None:
    book = new_book()
    alert = raise_alert(book)
    assert alert.state is AlertState.OPEN and alert.needs_acknowledgement
    book.acknowledge(alert.id, "sgt.brown", "sending PC Jones", AT + 5 * S)
    assert alert.state is AlertState.ACKNOWLEDGED
    assert (alert.owner, alert.acknowledged_at, alert.acknowledgement_note) == (
        "sgt.brown",
        AT + 5 * S,
        "sending PC Jones",
    )
    book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 40 * S)
    assert alert.state is AlertState.RESOLVED and alert.resolved_at == AT + 40 * S
    book.close(alert.id, "insp.gray", "reviewed CCTV", AT + 600 * S)
    assert alert.state is AlertState.CLOSED
    assert (alert.closed_by, alert.closed_at, alert.close_note) == (
        "insp.gray",
        AT + 600 * S,
        "reviewed CCTV",
    )
    # The acknowledgement is kept as it was.
    assert alert.acknowledged_by == "sgt.brown"


def test_resolved_before_acknowledgement_stays_on_the_board() -> None:
    book = new_book()
    alert = raise_alert(book)
    book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 10 * S)
    assert alert.state is AlertState.RESOLVED
    assert alert.needs_acknowledgement
    assert book.needing_attention() == [alert]
    # It may still be acknowledged; the state stays resolved.
    book.acknowledge(alert.id, "sgt.brown", "seen late", AT + 100 * S)
    assert alert.state is AlertState.RESOLVED and not alert.needs_acknowledgement
    book.close(alert.id, "sgt.brown", "", AT + 200 * S)
    assert book.needing_attention() == []


def test_closing_unacknowledged_resolved_alert_records_acknowledgement() -> None:
    book = new_book()
    alert = raise_alert(book)
    book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 10 * S)
    book.close(alert.id, "insp.gray", "checked", AT + 99 * S)
    assert alert.state is AlertState.CLOSED
    assert (alert.acknowledged_by, alert.acknowledged_at) == ("insp.gray", AT + 99 * S)


@pytest.mark.parametrize("state_path", ["open", "acknowledged"])
def test_cannot_close_while_cover_is_lapsed(state_path: str) -> None:
    book = new_book()
    alert = raise_alert(book)
    if state_path == "acknowledged":
        book.acknowledge(alert.id, "sgt.brown", "", AT)
    with pytest.raises(AlertLifecycleError):
        book.close(alert.id, "sgt.brown", "", AT + S)
    assert alert.state is not AlertState.CLOSED


def test_illegal_transitions() -> None:
    book = new_book()
    alert = raise_alert(book)
    book.acknowledge(alert.id, "a", "", AT)
    with pytest.raises(AlertLifecycleError, match="already acknowledged"):
        book.acknowledge(alert.id, "b", "", AT + S)
    assert alert.owner == "a"
    alert.resolve(AT + S)
    with pytest.raises(AlertLifecycleError):
        alert.resolve(AT + 2 * S)
    book.close(alert.id, "a", "", AT + 3 * S)
    with pytest.raises(AlertLifecycleError):
        book.close(alert.id, "a", "", AT + 4 * S)
    with pytest.raises(AlertLifecycleError):
        alert.resolve(AT + 5 * S)
    assert issubclass(AlertLifecycleError, CoverwatchError)


def test_acknowledging_closed_alert_is_refused() -> None:
    book = new_book()
    alert = raise_alert(book)
    alert.resolve(AT + S)
    book.close(alert.id, "a", "", AT + 2 * S)
    with pytest.raises(AlertLifecycleError):
        book.acknowledge(alert.id, "b", "", AT + 3 * S)
    assert alert.acknowledged_by == "a"


def test_resolve_before_lapse_start_is_refused() -> None:
    alert = raise_alert(new_book())
    with pytest.raises(AlertLifecycleError):
        alert.resolve(T0 - 1)


def test_users_must_be_named() -> None:
    book = new_book()
    alert = raise_alert(book)
    with pytest.raises(AlertLifecycleError):
        book.acknowledge(alert.id, " ", "", AT)
    assert alert.state is AlertState.OPEN


def test_unknown_alert() -> None:
    book = new_book()
    with pytest.raises(UnknownAlertError):
        book.acknowledge("lapse-0000", "a", "", AT)
    assert not issubclass(UnknownAlertError, AlertLifecycleError)


# --- the book --------------------------------------------------------------


def test_on_alert_is_idempotent() -> None:
    book = new_book()
    first = raise_alert(book)
    book.acknowledge(first.id, "a", "", AT)
    again = book.on_alert("north-gate", "armed-cover", T0, AT + 99, count=1, need=2)
    assert again is first
    assert len(book) == 1
    assert again.state is AlertState.ACKNOWLEDGED and again.count == 0
    # A different lapse start, rule, post or kind is a different alert.
    book.on_alert("north-gate", "armed-cover", T0 + 1, AT, 0, 2)
    book.on_alert("north-gate", "other", T0, AT, 0, 2)
    book.on_alert("south-gate", "armed-cover", T0, AT, 0, 2)
    book.on_alert("north-gate", "armed-cover", T0, AT, 0, 2, kind="unbriefed")
    assert len(book) == 5


def test_alert_ids_are_stable_and_distinct() -> None:
    a = alert_id_for("lapse", "a:b", "c", 1)
    assert a == alert_id_for("lapse", "a:b", "c", 1)
    assert a != alert_id_for("lapse", "a", "b:c", 1)
    assert a.startswith("lapse-")


def test_on_lapse_ended_without_alert_and_repeated() -> None:
    book = new_book()
    assert book.on_lapse_ended("north-gate", "armed-cover", T0, AT) is None
    alert = raise_alert(book)
    book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 10 * S)
    assert book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 20 * S) is alert
    assert alert.resolved_at == AT + 10 * S


def test_alert_before_lapse_start_is_refused() -> None:
    with pytest.raises(ValueError):
        new_book().on_alert("p", "r", T0, T0 - 1, 0, 1)


# --- escalation ------------------------------------------------------------


def levels(steps: list[Escalation]) -> list[tuple[str, int]]:
    return [(s.alert_id, s.level) for s in steps]


def test_escalation_steps_emitted_once_each() -> None:
    book = new_book()
    alert = raise_alert(book)
    assert book.tick(AT - 1) == []
    first = book.tick(AT)
    assert levels(first) == [(alert.id, 0)]
    assert first[0].targets == ("role:supervisor",)
    assert first[0].due_at == AT and first[0].at == AT
    assert (first[0].post, first[0].rule, first[0].count, first[0].need) == (
        "north-gate",
        "armed-cover",
        0,
        2,
    )
    assert book.tick(AT) == []
    assert book.tick(AT + 59 * S) == []
    assert levels(book.tick(AT + 60 * S)) == [(alert.id, 1)]
    assert book.tick(AT + 61 * S) == []
    assert levels(book.tick(AT + 300 * S)) == [(alert.id, 2)]
    assert book.tick(AT + 10_000 * S) == []
    assert alert.escalated_level == 2


def test_time_jump_emits_every_skipped_level_in_order() -> None:
    book = new_book()
    alert = raise_alert(book)
    steps = book.tick(AT + 1_000 * S)
    assert levels(steps) == [(alert.id, 0), (alert.id, 1), (alert.id, 2)]
    assert [s.due_at for s in steps] == [AT, AT + 60 * S, AT + 300 * S]
    assert all(s.at == AT + 1_000 * S for s in steps)
    assert book.tick(AT + 2_000 * S) == []


def test_time_going_backwards_emits_nothing_again() -> None:
    book = new_book()
    raise_alert(book)
    assert len(book.tick(AT + 60 * S)) == 2
    assert book.tick(AT) == []


def test_steps_from_several_alerts_ordered_by_due_time() -> None:
    book = new_book()
    late = raise_alert(book, "south-gate", T0 + 30 * S)
    early = raise_alert(book, "north-gate", T0)
    steps = book.tick(AT + 100 * S)
    assert levels(steps) == [(early.id, 0), (late.id, 0), (early.id, 1), (late.id, 1)]


def test_acknowledge_stops_escalation() -> None:
    book = new_book()
    alert = raise_alert(book)
    assert len(book.tick(AT)) == 1
    book.acknowledge(alert.id, "sgt.brown", "on it", AT + 10 * S)
    assert book.tick(AT + 10_000 * S) == []
    assert alert.escalated_level == 0


def test_resolve_before_acknowledgement_stops_escalation() -> None:
    book = new_book()
    alert = raise_alert(book)
    book.tick(AT)
    book.on_lapse_ended("north-gate", "armed-cover", T0, AT + 30 * S)
    assert book.tick(AT + 10_000 * S) == []
    assert alert.needs_acknowledgement


def test_policy_per_alert() -> None:
    fast = EscalationPolicy((EscalationLevel(0, ("role:armoury",)),))
    book = AlertBook(POLICY, policy_for=lambda a: fast if a.post == "armoury" else POLICY)
    raise_alert(book, "armoury")
    raise_alert(book, "north-gate")
    targets = sorted(s.targets for s in book.tick(AT))
    assert targets == [("role:armoury",), ("role:supervisor",)]


# --- records ---------------------------------------------------------------


def test_records_round_trip_and_keep_escalation_progress() -> None:
    book = new_book()
    a = raise_alert(book, "north-gate")
    b = raise_alert(book, "south-gate")
    c = raise_alert(book, "east-gate")
    book.tick(AT + 60 * S)
    book.acknowledge(b.id, "sgt.brown", "note", AT + 61 * S)
    book.on_lapse_ended("east-gate", "armed-cover", T0, AT + 70 * S)
    book.close(c.id, "insp.gray", "done", AT + 80 * S)
    records = book.to_records()

    rebuilt = AlertBook.from_records(records, POLICY)
    assert rebuilt.to_records() == records
    assert rebuilt.get(b.id).owner == "sgt.brown"
    assert rebuilt.get(c.id).state is AlertState.CLOSED
    # Levels 0 and 1 were emitted before the restart: only level 2 comes now.
    assert levels(rebuilt.tick(AT + 300 * S)) == [(a.id, 2)]
    # The rebuilt book stays idempotent on the same lapse.
    assert rebuilt.on_alert("north-gate", "armed-cover", T0, AT, 0, 2) is rebuilt.get(a.id)


def test_records_are_checked() -> None:
    record = raise_alert(new_book()).to_record()
    with pytest.raises(AlertLifecycleError):
        Alert.from_record({**record, "state": "closed"})
    with pytest.raises(AlertLifecycleError):
        Alert.from_record({**record, "state": "sleeping"})
    with pytest.raises(AlertLifecycleError):
        Alert.from_record({k: v for k, v in record.items() if k != "post"})
    with pytest.raises(AlertLifecycleError, match="twice"):
        AlertBook.from_records([record, record], POLICY)


def test_levels_due_but_never_recorded_as_sent_are_sent_again_once() -> None:
    from coverwatch.domain.supervision import undelivered_steps

    book = new_book()
    alert = raise_alert(book)
    at = alert.alert_at
    assert [s.level for s in book.tick(at + 61 * S)] == [0, 1]  # both recorded as due
    # The server stopped while sending level 1: only level 0 left a delivery record.
    level0 = {0: {"role:supervisor"}}
    steps = undelivered_steps(book, {alert.id: level0}, at + 90 * S)
    assert [(s.level, s.targets, s.due_at) for s in steps] == [
        (1, ("user:jsmith", "mailto://ops@example.org"), at + 60 * S)]
    # One of level 1's two targets was recorded before the stop: only the other again.
    part = {**level0, 1: {"user:jsmith"}}
    [step] = undelivered_steps(book, {alert.id: part}, at + 90 * S)
    assert step.targets == ("mailto://ops@example.org",)
    both = {**level0, 1: {"user:jsmith", "mailto://ops@example.org"}}
    assert undelivered_steps(book, {alert.id: both}, at + 90 * S) == []  # never twice
    # Still in flight elsewhere (due less than min_age ago): not yet.
    assert undelivered_steps(book, {alert.id: level0}, at + 90 * S, min_age_us=60 * S) == []
    alert.acknowledge("sup", "on it", at + 95 * S)
    assert undelivered_steps(book, {}, at + 100 * S) == []  # someone owns it


def test_level_due_says_whether_a_tick_would_step_at_every_instant() -> None:
    """The upkeep skips a quiet site's tick when ``level_due`` is False: it must be True
    exactly when ``tick`` would return a step, and change nothing itself."""
    book = new_book()
    first = raise_alert(book)
    second = raise_alert(book, "east-gate", T0 + 45 * S)
    third = raise_alert(book, "west-gate", T0 + 90 * S)
    book.acknowledge(third.id, "sgt.brown", "on it", T0 + 100 * S)  # escalates no more
    seen = []
    for t in range(T0, T0 + 500 * S, 5 * S):
        before = [a.escalated_level for a in (first, second, third)]
        due = book.level_due(t)
        assert [a.escalated_level for a in (first, second, third)] == before
        steps = book.tick(t)
        assert due == bool(steps), (t - T0) // S
        seen += [(s.alert_id, s.level, (t - T0) // S) for s in steps]
    assert [(a, lv) for a, lv, _ in seen] == [
        (first.id, 0), (second.id, 0), (first.id, 1), (second.id, 1), (first.id, 2),
        (second.id, 2)]
