"""The alert book: every alert of a site, raised and resolved from the engine's cover
changes, escalated as time passes and taken by people (pure; times passed in).
The lifecycle of one alert is :mod:`coverwatch.domain.alerts`'s."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from coverwatch.domain.alerts import (
    DIRECT_KINDS,
    Alert,
    AlertLifecycleError,
    AlertState,
    Escalation,
    EscalationPolicy,
    UnknownAlertError,
    alert_id_for,
)

__all__ = ["AlertBook", "AlertsRead", "PolicyChooser"]

PolicyChooser = Callable[[Alert], EscalationPolicy]
# An older alert by id from where the book's history is kept (None: no such alert).
Archive = Callable[[str], Alert | None]


class AlertsRead(Protocol):
    """What may be read of an alert book (an adapter's view: it changes nothing)."""

    @property
    def policy(self) -> EscalationPolicy: ...

    def __contains__(self, alert_id: object) -> bool: ...

    def get(self, alert_id: str) -> Alert: ...

    def alerts(self) -> list[Alert]: ...

    def any_live(self, kind: str) -> bool: ...

    def policy_of(self, alert: Alert) -> EscalationPolicy: ...


class AlertBook:
    """Every alert the server knows, and the escalation steps still to come.

    The server feeds it engine changes (:meth:`on_alert`,
    :meth:`on_lapse_ended`), people's actions (:meth:`acknowledge`,
    :meth:`close`) and the time (:meth:`tick`). ``policy_for`` picks a policy
    per alert (e.g. by post); without it every alert uses ``policy``.

    With ``held_since``, the book holds every alert not closed and every alert
    raised at or after it; an older closed alert asked for by id (or raised
    again) is taken from the ``archive``, so it is never raised twice.
    """

    def __init__(
        self,
        policy: EscalationPolicy,
        policy_for: PolicyChooser | None = None,
        alerts: Iterable[Alert] = (),
        archive: Archive | None = None,
        held_since: int | None = None,
    ) -> None:
        self.policy = policy
        self.policy_for = policy_for
        self.archive = archive
        self.held_since = held_since
        self._alerts: dict[str, Alert] = {}
        for alert in alerts:
            alert._check_consistent()
            if alert.id in self._alerts:
                raise AlertLifecycleError(f"alert {alert.id} appears twice")
            self._alerts[alert.id] = alert

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        policy: EscalationPolicy,
        policy_for: PolicyChooser | None = None,
        archive: Archive | None = None,
        held_since: int | None = None,
    ) -> AlertBook:
        """Rebuild a book from stored alert records (see :meth:`Alert.to_record`)."""
        return cls(policy, policy_for, [Alert.from_record(r) for r in records], archive,
                   held_since)

    def _older(self, alert_id: str, lapse_start: int | None = None) -> Alert | None:
        """An alert not held here, from the archive (then held); None if there is none."""
        if self.archive is None or self.held_since is None or (
                lapse_start is not None and lapse_start >= self.held_since):
            return None  # all held, or raised at or after its lapse began: held if it exists
        alert = self.archive(alert_id)
        if alert is not None:
            alert._check_consistent()
            self._alerts[alert.id] = alert
        return alert

    def to_records(self) -> list[dict[str, Any]]:
        """Every alert as a plain record, oldest alert first."""
        return [a.to_record() for a in self.alerts()]

    def __len__(self) -> int:
        return len(self._alerts)

    def __iter__(self) -> Iterator[Alert]:
        return iter(self.alerts())

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._alerts or (
            isinstance(alert_id, str) and self._older(alert_id) is not None)

    def get(self, alert_id: str) -> Alert:
        """The alert with this id; :class:`UnknownAlertError` if there is none."""
        alert = self._alerts.get(alert_id) or self._older(alert_id)
        if alert is None:
            raise UnknownAlertError(f"no alert {alert_id!r}")
        return alert

    def find(self, post: str, rule: str, lapse_start: int, kind: str = "lapse") -> Alert | None:
        """The alert for one lapse, if one was raised."""
        alert_id = alert_id_for(kind, post, rule, lapse_start)
        return self._alerts.get(alert_id) or self._older(alert_id, lapse_start)

    def alerts(self) -> list[Alert]:
        """All alerts, ordered by alert time then id."""
        return sorted(self._alerts.values(), key=lambda a: (a.alert_at, a.id))

    def any_live(self, kind: str) -> bool:
        """Whether an alert of ``kind`` is open or acknowledged (unsorted: a quick look)."""
        live = (AlertState.OPEN, AlertState.ACKNOWLEDGED)
        return any(a.kind == kind and a.state in live for a in self._alerts.values())

    def needing_attention(self) -> list[Alert]:
        """Alerts not yet closed (the supervisor's board): most urgent kind first, then oldest."""
        return sorted((a for a in self.alerts() if a.state is not AlertState.CLOSED),
                      key=lambda a: (a.priority, a.alert_at, a.id))

    def on_alert(
        self,
        post: str,
        rule: str,
        lapse_start: int,
        alert_at: int,
        count: int,
        need: int,
        kind: str = "lapse",
        details: Mapping[str, Any] | None = None,
    ) -> Alert:
        """Raise the alert for a lapse; the existing alert if already raised."""
        alert_id = alert_id_for(kind, post, rule, lapse_start)
        existing = self._alerts.get(alert_id) or self._older(alert_id, lapse_start)
        if existing is not None:
            return existing
        if alert_at < lapse_start:
            raise ValueError(f"alert at {alert_at} is before its lapse began ({lapse_start})")
        alert = Alert(
            id=alert_id,
            kind=kind,
            post=post,
            rule=rule,
            lapse_start=lapse_start,
            alert_at=alert_at,
            count=count,
            need=need,
            details=details,
        )
        self._alerts[alert_id] = alert
        return alert

    def adopt(self, alert: Alert) -> None:
        """Take in an alert raised and stored elsewhere (an SOS stored with its report)."""
        alert._check_consistent()
        self._alerts.setdefault(alert.id, alert)

    def on_lapse_ended(
        self, post: str, rule: str, lapse_start: int, end: int, kind: str = "lapse"
    ) -> Alert | None:
        """Cover came back at ``end``: resolve the lapse's alert.

        Returns None if the lapse never raised an alert (it ended within its
        grace period). Repeating the call for an alert already resolved or
        closed changes nothing.
        """
        alert = self.find(post, rule, lapse_start, kind)
        if alert is None:
            return None
        if alert.state in (AlertState.OPEN, AlertState.ACKNOWLEDGED):
            alert.resolve(end)
        return alert

    def acknowledge(self, alert_id: str, user: str, note: str, now: int) -> Alert:
        """``user`` takes ownership of the alert; escalation stops."""
        alert = self.get(alert_id)
        alert.acknowledge(user, note, now)
        return alert

    def forget(self, alert_id: str) -> None:  # an alert the store never took (fenced)
        self._alerts.pop(alert_id, None)

    def restore(self, alert: Alert) -> None:
        """Replace an alert with a changed copy (the server persists first, then restores)."""
        if alert.id not in self._alerts:
            raise UnknownAlertError(f"no alert {alert.id}")
        alert._check_consistent()
        self._alerts[alert.id] = alert

    def close(self, alert_id: str, user: str, note: str, now: int) -> Alert:
        """``user`` closes a resolved alert."""
        alert = self.get(alert_id)
        alert.close(user, note, now)
        return alert

    def tick(self, now_us: int) -> list[Escalation]:
        """Escalation steps newly due at ``now_us``, each (alert, level) once.

        Steps come ordered by due time, then alert, then level, so skipped
        levels after a jump in time come out in order.
        """
        steps: list[Escalation] = []
        for alert in self._alerts.values():
            if not alert.escalating or alert.kind in DIRECT_KINDS:
                continue
            policy = self._policy(alert)
            due = policy.level_due(alert.alert_at, now_us)
            for level in range(alert.escalated_level + 1, due + 1):
                spec = policy.levels[level]
                steps.append(
                    Escalation(
                        alert_id=alert.id,
                        level=level,
                        targets=spec.notify,
                        due_at=alert.alert_at + spec.after_us,
                        at=now_us,
                        kind=alert.kind,
                        post=alert.post,
                        rule=alert.rule,
                        lapse_start=alert.lapse_start,
                        alert_at=alert.alert_at,
                        count=alert.count,
                        need=alert.need,
                    )
                )
            if due > alert.escalated_level:
                alert.escalated_level = due
        steps.sort(key=lambda s: (s.due_at, s.alert_at, s.alert_id, s.level))
        return steps

    def level_due(self, now_us: int) -> bool:
        """Whether :meth:`tick` at ``now_us`` would return a step (this changes nothing):
        a site with no level due need not tick."""
        for alert in self._alerts.values():
            if alert.escalating and alert.kind not in DIRECT_KINDS and self._policy(
                    alert).level_due(alert.alert_at, now_us) > alert.escalated_level:
                return True
        return False

    def _policy(self, alert: Alert) -> EscalationPolicy:
        return self.policy if self.policy_for is None else self.policy_for(alert)

    policy_of = _policy
