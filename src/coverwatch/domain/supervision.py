"""Alerts about supervision itself: a level nobody could be reached at, and the
server's own problems (kinds ``notification-failure`` and ``system``).

A level at which no delivery succeeded counts as failed: the alert moves on to
the next level at once (:func:`escalate_now`) instead of waiting for its delay.
Alerts of :data:`~coverwatch.domain.alerts.DIRECT_KINDS` are raised here
(:func:`raise_direct`), sent once to supervisors and admins by the server, and
never escalate through the site's policy. A level recorded as due that left no
delivery record (the server stopped while sending) is sent again
(:func:`undelivered_steps`); a recorded one never is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from coverwatch.domain.alertbook import AlertBook, AlertsRead
from coverwatch.domain.alerts import DIRECT_KINDS, Alert, AlertState, Escalation, alert_id_for

__all__ = [
    "DIRECT_TARGETS",
    "escalate_now",
    "open_direct",
    "raise_direct",
    "undelivered_steps",
]

# Who hears about the server's own problems.
DIRECT_TARGETS = ("role:supervisor", "role:admin")


def escalate_now(book: AlertBook, alert_id: str, failed_level: int, now: int) -> Escalation | None:
    """The next level's step, due now, because ``failed_level`` reached nobody.

    None when the alert is no longer escalating (acknowledged, resolved), when
    a later level was already emitted meanwhile, or when there is no next level.
    """
    alert = book.get(alert_id)
    if not alert.escalating or alert.kind in DIRECT_KINDS:
        return None
    if alert.escalated_level != failed_level:
        return None
    levels = book.policy_of(alert).levels
    nxt = failed_level + 1
    if nxt >= len(levels):
        return None
    alert.escalated_level = nxt
    return Escalation(
        alert_id=alert.id, level=nxt, targets=levels[nxt].notify, due_at=now, at=now,
        kind=alert.kind, post=alert.post, rule=alert.rule, lapse_start=alert.lapse_start,
        alert_at=alert.alert_at, count=alert.count, need=alert.need,
    )


def undelivered_steps(
    book: AlertsRead, recorded: Mapping[str, Mapping[int, set[str]]], now: int,
    min_age_us: int = 0, shown: Callable[[str], str] = lambda target: target,
) -> list[Escalation]:
    """Levels recorded as due whose sending left no delivery record for some of their
    targets (the server stopped while sending): a step for those targets, to send again.

    ``recorded`` holds, per alert and level, the targets with any attempt recorded
    (delivered or failed), as ``shown`` writes a policy target (URLs redacted): those
    are never sent again. Levels due less than ``min_age_us`` ago may still be in flight.
    """
    steps: list[Escalation] = []
    for alert in book.alerts():
        if not alert.escalating or alert.kind in DIRECT_KINDS:
            continue
        levels = book.policy_of(alert).levels
        done = recorded.get(alert.id, {})
        for level in range(min(alert.escalated_level, len(levels) - 1) + 1):
            due = alert.alert_at + levels[level].after_us
            if now - due < min_age_us:
                continue
            targets = tuple(t for t in levels[level].notify
                            if shown(t) not in done.get(level, set()))
            if not targets:
                continue
            steps.append(Escalation(
                alert_id=alert.id, level=level, targets=targets, due_at=due,
                at=now, kind=alert.kind, post=alert.post, rule=alert.rule,
                lapse_start=alert.lapse_start, alert_at=alert.alert_at, count=alert.count,
                need=alert.need))
    steps.sort(key=lambda s: (s.due_at, s.alert_id, s.level))
    return steps


def open_direct(book: AlertsRead, kind: str, rule: str | None = None,
                about: str | None = None) -> list[Alert]:
    """Alerts of a direct kind still open or acknowledged (not yet resolved)."""
    return [
        a for a in book.alerts()
        if a.kind == kind and a.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED)
        and (rule is None or a.rule == rule) and (about is None or a.about == about)
    ]


def raise_direct(book: AlertBook, kind: str, post: str, rule: str, at: int, detail: str,
                 about: str | None = None) -> Alert:
    """Raise a ``system`` or ``notification-failure`` alert at ``at``.

    ``rule`` names what is wrong (``target:role:supervisor``, ``engine-lag``,
    or the failed alert's rule); ``about`` the alert it concerns, if any.
    """
    if kind not in DIRECT_KINDS:
        raise ValueError(f"{kind!r} is not a kind of alert about the server itself")
    while alert_id_for(kind, post, rule, at) in book:
        at += 1  # two problems of the same name in one microsecond: keep both
    alert = book.on_alert(post, rule, at, at, 0, 0, kind=kind)
    alert.detail = detail
    alert.about = about
    return alert
