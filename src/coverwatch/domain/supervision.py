"""Alerts about supervision itself: a level nobody could be reached at, and the
server's own problems (kinds ``notification-failure`` and ``system``).

A level at which no delivery succeeded counts as failed: the alert moves on to
the next level at once (:func:`escalate_now`) instead of waiting for its delay.
Alerts of :data:`~coverwatch.domain.alerts.DIRECT_KINDS` are raised here
(:func:`raise_direct`), sent once to supervisors and admins by the server, and
never escalate through the site's policy.
"""

from __future__ import annotations

from coverwatch.domain.alerts import (
    DIRECT_KINDS,
    Alert,
    AlertBook,
    AlertState,
    Escalation,
    alert_id_for,
)

__all__ = [
    "DIRECT_TARGETS",
    "escalate_now",
    "open_direct",
    "raise_direct",
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


def open_direct(book: AlertBook, kind: str, rule: str | None = None,
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
