"""Prometheus metrics for `/metrics`: ingest, engine lag, open alerts, stale officers,
notifications, readiness and the tree heads' witnesses; in distributed mode, each
site's owner and its lag.

A registry per app (not the process-global one) so that several apps, as in
the tests, do not collide.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from coverwatch.server.unit import SiteUnit

__all__ = ["render"]


class _ServicesCollector(Collector):
    def __init__(self, svc: SiteUnit) -> None:
        self.svc = svc

    def collect(self):  # type: ignore[no-untyped-def]
        svc = self.svc
        ingested = CounterMetricFamily(
            "coverwatch_events_ingested", "Events stored, by input path", labels=["source"]
        )
        for source, n in sorted(svc.ingested.items()):
            ingested.add_metric([source], n)
        yield ingested
        yield CounterMetricFamily("coverwatch_events_late", "Events stored as late",
                                  value=svc.late_total)
        yield CounterMetricFamily("coverwatch_events_duplicate", "Re-sent events not stored again",
                                  value=svc.duplicates_total)
        yield GaugeMetricFamily("coverwatch_engine_lag_seconds",
                                "Wall clock minus the live horizon (includes allowed lateness)",
                                value=svc.engine_lag_s())
        open_alerts = sum(1 for a in svc.book.alerts() if a.state.value in ("open", "acknowledged"))
        yield GaugeMetricFamily("coverwatch_alerts_open", "Alerts open or acknowledged",
                                value=open_alerts)
        yield GaugeMetricFamily("coverwatch_officers_stale",
                                "On-duty officers whose device has gone silent",
                                value=svc.shown.stale_officers())
        yield GaugeMetricFamily("coverwatch_feed_subscribers", "Live feed connections",
                                value=svc.feed.subscribers)
        yield from _notification_metrics(svc)
        yield from _witness_metrics(svc)
        if svc.bus is not None:  # distributed: who evaluates the site, how far behind
            owner = GaugeMetricFamily("coverwatch_site_owner",
                                      "1 for the worker that owns the site (its checkpoint)",
                                      labels=["owner", "here"])
            if svc.bus.owner is not None:
                owner.add_metric([svc.bus.owner, "1" if svc.bus.owns() else "0"], 1)
            yield owner
            lag = svc.view_lag_s()
            yield GaugeMetricFamily("coverwatch_site_owner_lag_seconds",
                                    "Wall clock minus the owner's latest checkpointed horizon",
                                    value=float("nan") if lag is None else lag)
        delay = GaugeMetricFamily("coverwatch_device_upload_delay_seconds",
                                  "Receive time minus reading time, per device (recent readings)",
                                  labels=["device", "stat"])
        for device, stats in sorted(svc.watch.delays().items()):
            for stat in ("median_s", "p95_s", "max_s"):
                delay.add_metric([device, stat.removesuffix("_s")], stats[stat])
        yield delay


def _notification_metrics(svc: SiteUnit):  # type: ignore[no-untyped-def]
    """Deliveries since start, by outcome; notifications still being sent; readiness."""
    sent = CounterMetricFamily("coverwatch_notifications", "Notification attempts since start",
                               labels=["outcome"])
    sent.add_metric(["delivered"], svc.outbox.delivered_total)
    sent.add_metric(["failed"], svc.outbox.failed_total)
    yield sent
    yield GaugeMetricFamily("coverwatch_notifications_pending", "Notifications being sent",
                            value=svc.outbox.pending)
    yield GaugeMetricFamily("coverwatch_ready", "1 when /readyz answers ready (watchdog)",
                            value=1 if svc.health.ready else 0)


def _witness_metrics(svc: SiteUnit):  # type: ignore[no-untyped-def]
    """Per witness of the signed tree heads: given, failed attempts, heads waiting."""
    sent = CounterMetricFamily("coverwatch_witness_heads", "Tree heads given to a witness, "
                               "and failed attempts, since start", labels=["witness", "outcome"])
    waiting = GaugeMetricFamily("coverwatch_witness_pending",
                                "Tree heads a witness has not taken yet", labels=["witness"])
    states = {} if svc.witnesses is None else svc.witnesses.states()
    for name, s in states.items():
        sent.add_metric([name, "taken"], s.sent)
        sent.add_metric([name, "failed"], s.failed)
        waiting.add_metric([name], len(s.pending))
    yield sent
    yield waiting


class _SitesCollector(Collector):
    """Several sites: every family once, each sample labelled with its site."""

    def __init__(self, sites: Sequence[SiteUnit]) -> None:
        self.sites = sites

    def collect(self):  # type: ignore[no-untyped-def]
        merged: dict[str, Metric] = {}
        for svc in self.sites:
            for family in _ServicesCollector(svc).collect():  # type: ignore[no-untyped-call]
                out = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    out.add_sample(sample.name, {"site": svc.site.id, **sample.labels},
                                   sample.value)
        yield from merged.values()


def render(sites: Sequence[SiteUnit]) -> tuple[bytes, str]:
    """The metrics of a deployment's sites (labelled by site when there are several)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServicesCollector(sites[0]) if len(sites) == 1 else _SitesCollector(sites))
    return generate_latest(registry), CONTENT_TYPE_LATEST
