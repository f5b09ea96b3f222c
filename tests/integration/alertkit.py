"""The alerts a live server would have raised, for tests that store events without one
(an evidence pack's verify checks lapse alerts against the lapses the events imply)."""

from __future__ import annotations

from coverwatch.domain.alerts import Alert, alert_id_for
from coverwatch.reports.history import recompute
from coverwatch.storage import Store
from coverwatch.storage.versions import SiteVersion

__all__ = ["raise_alerts"]


def raise_alerts(store: Store, versions: list[SiteVersion], until: int) -> None:
    """Raise a lapse alert for every stored lapse that outlasted its grace before ``until``."""
    for lp in recompute(store, versions, until=until, checkpoints=False).lapses:
        if lp.alert_at is not None and lp.alert_at <= until:
            alert = Alert(alert_id_for("lapse", lp.post, lp.rule, lp.start), "lapse", lp.post,
                          lp.rule, lp.start, lp.alert_at, lp.min_cover, 1)
            store.record_alert_event(alert.to_record(), actor="engine", action="alert.raised")
