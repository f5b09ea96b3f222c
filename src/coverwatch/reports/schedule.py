"""The daily activity report by mail from the running server, not only from cron.

With ``Settings.daily_report_at`` ("HH:MM", site time zone) and ``daily_report_to``
(``role:``/``user:`` targets or notification URLs), once a day at that time the previous
local day's report is rendered (PDF and CSV, as ``coverwatch records daily``) and sent
through the notifier: attached where the channel takes files (mail), with a summary and a
link (``public_url``) in the body for the others.

Each sending is audited (``records.daily.sent``: the day, who it reached and who it did
not, the files' SHA-256) and the last day sent is saved (server state
``records.daily.last_sent``), so a restart never sends a day again and a day missed while
the server was down goes out when it starts (at most :data:`CATCH_UP_DAYS` back). A day
that reached nobody is audited (``records.daily.failed``) and tried again
:data:`RETRY_S` later. A crash between sending and saving sends that day once more: a
duplicate report is better than a missing one. When first enabled, nothing already due
is sent: the first report goes at the next ``daily_report_at``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from coverwatch.domain.site import Site
from coverwatch.notify.notifier import Message, Notifier, redact_url
from coverwatch.reports.supervision import DailyReport, daily_report
from coverwatch.reports.supervision_out import records_csv, records_pdf
from coverwatch.storage import Store
from coverwatch.storage.versions import SiteVersion, load_versions

__all__ = ["CATCH_UP_DAYS", "LAST_SENT", "RETRY_S", "DailyMailer", "check_schedule", "due_days",
           "next_due_us", "parse_at", "run_daily_reports"]

log = logging.getLogger("coverwatch.reports")

LAST_SENT = "records.daily.last_sent"
CATCH_UP_DAYS = 7  # a longer outage is a matter for a person, not a flood of mail
RETRY_S = 3600.0
_WAKE_S = 300.0  # re-read the clock at least this often (it may be set or jump)


def parse_at(text: str) -> _dt.time:
    """``HH:MM`` (24 h) as a time; ValueError otherwise."""
    try:
        hh, mm = text.split(":")
        if len(hh) != 2 or len(mm) != 2:
            raise ValueError
        return _dt.time(int(hh), int(mm))
    except ValueError:
        raise ValueError(f"expected HH:MM (24 h), got {text!r}") from None


def check_schedule(at: str | None, to: Sequence[str]) -> None:
    """Both or neither, and a valid time: raises ValueError saying what is wrong."""
    if at is not None:
        parse_at(at)
    if bool(at) != bool(to):
        raise ValueError("give both the time (--daily-report-at) and at least one "
                         "recipient (--daily-report-to), or neither")


def _local_now(now_us: int, zone: ZoneInfo) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(now_us / 1e6, zone)


def _latest_due(now_us: int, zone: ZoneInfo, at: _dt.time) -> _dt.date:
    now = _local_now(now_us, zone)
    return now.date() - _dt.timedelta(days=1 if now.time() >= at else 2)


def due_days(now_us: int, timezone: str, at: _dt.time, last_sent: str | None,
             catch_up: int = CATCH_UP_DAYS) -> list[str]:
    """The days (YYYY-MM-DD, oldest first) whose report is due and not yet sent."""
    latest = _latest_due(now_us, ZoneInfo(timezone), at)
    if last_sent is None:
        return []
    first = max(_dt.date.fromisoformat(last_sent) + _dt.timedelta(days=1),
                latest - _dt.timedelta(days=catch_up - 1))
    return [(first + _dt.timedelta(days=i)).isoformat() for i in range((latest - first).days + 1)]


def next_due_us(now_us: int, timezone: str, at: _dt.time) -> int:
    """The next instant after ``now_us`` at which a report falls due."""
    zone = ZoneInfo(timezone)
    day = _local_now(now_us, zone).date()
    for k in range(3):  # today's time may have passed (or not exist: a DST gap)
        when = _dt.datetime.combine(day + _dt.timedelta(days=k), at, zone)
        t = int(when.timestamp() * 1_000_000)
        if t > now_us:
            return t
    return now_us + 86_400_000_000


def _counts(rep: DailyReport) -> dict[str, int]:
    sec = rep.sections
    acks = [r["state"] for r in sec.get("orders acknowledgements", [])]
    return {"lapses": len(sec.get("lapses", [])), "alerts": len(sec.get("alerts", [])),
            "alerts acknowledged": sum(1 for a in sec.get("alerts", []) if a["acknowledged_by"]),
            "notifications failed": sum(1 for d in sec.get("notifications", [])
                                        if d["outcome"] == "failed"),
            "orders acknowledgements missed": acks.count("missed"),
            "orders acknowledgements late": acks.count("late")}


@dataclass
class DailyMailer:
    """Sends the due daily reports; one per server (see the module docstring)."""

    store: Store
    notifier: Notifier
    site: Callable[[], Site]
    source: str  # the site file, for a store that has no version yet
    at: _dt.time
    targets: tuple[str, ...]
    clock: Callable[[], int]
    public_url: str | None = None
    _retry_at: dict[str, int] = field(default_factory=dict)

    def render(self, day: str) -> tuple[DailyReport, str, bytes, bytes]:
        """The day's report, its title, PDF and CSV (blocking)."""
        versions = load_versions(self.store) or [SiteVersion(0, self.source)]
        rep = daily_report(self.store, list(versions), self.site(), day)
        title = f"Daily activity report: {rep.site}, {day}"
        return rep, title, records_pdf(title, rep, rep.sections, rep.timezone), \
            records_csv(rep.sections)

    async def send_due(self) -> list[str]:
        """Send every report now due (oldest first); returns the days sent."""
        now = self.clock()
        last = await asyncio.to_thread(self.store.get_state, LAST_SENT)
        tz = self.site().timezone
        if last is None:  # first enabled: start from here, send nothing already due
            last = _latest_due(now, ZoneInfo(tz), self.at).isoformat()
            await asyncio.to_thread(self.store.set_state, LAST_SENT, last)
            log.info("daily report: the first goes at %s (site time)", self.at)
        sent = []
        for day in due_days(now, tz, self.at, last):
            if self._retry_at.get(day, 0) > now:
                break  # keep the order: a later day never goes before an earlier one
            if not await self.send_day(day):
                self._retry_at[day] = now + int(RETRY_S * 1_000_000)
                break
            sent.append(day)
        return sent

    async def send_day(self, day: str) -> bool:
        """Render and send one day's report; audit it; True if it reached anyone."""
        rep, title, pdf, csv = await asyncio.to_thread(self.render, day)
        counts = _counts(rep)
        link = (f"{self.public_url.rstrip('/')}/api/v1/records/daily?date={day}&format=pdf"
                if self.public_url else None)
        body = "\n".join([f"{title} ({rep.timezone}).", *(f"{k}: {v}" for k, v in counts.items()),
                          "The report is attached as PDF and CSV where this channel takes "
                          "files." + (f" It is also at {link} (sign in)." if link else "")])
        name = f"daily-{rep.site}-{day}"
        with tempfile.TemporaryDirectory(prefix="coverwatch-daily-") as tmp:
            files = (Path(tmp) / f"{name}.pdf", Path(tmp) / f"{name}.csv")
            files[0].write_bytes(pdf)
            files[1].write_bytes(csv)
            message = Message(f"daily-report:{day}", -1, self.targets, title, body,
                              {"kind": "daily-report", "site": rep.site, "day": day,
                               "counts": counts, "link": link},
                              attachments=tuple(str(f) for f in files))
            deliveries = await self.notifier.send_message(message)
        ok = [d for d in deliveries if d.ok]
        details = {
            "day": day, "targets": [redact_url(t) if "://" in t else t for t in self.targets],
            "delivered": [{"person": d.person, "to": d.to} for d in ok],
            "failed": [{"person": d.person, "to": d.to, "target": ", ".join(d.targets),
                        "error": d.error} for d in deliveries if not d.ok],
            "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
            "csv_sha256": hashlib.sha256(csv).hexdigest(),
        }
        action = "records.daily.sent" if ok else "records.daily.failed"
        await asyncio.to_thread(self.store.append_audit, "server", action,
                                f"records:daily:{day}", details)
        if ok:
            await asyncio.to_thread(self.store.set_state, LAST_SENT, day)
            log.info("daily report %s sent to %d address(es)", day, len(ok))
        else:
            log.error("daily report %s reached nobody; trying again in %.0f s", day, RETRY_S)
        return bool(ok)


async def run_daily_reports(mailer: DailyMailer) -> None:
    """Background task: send what is due now (a missed day too), then at each due time."""
    while True:
        try:
            await mailer.send_due()
        except Exception:  # the report must never stop the server
            log.exception("daily report failed")
        now = mailer.clock()
        wait = (next_due_us(now, mailer.site().timezone, mailer.at) - now) / 1e6
        await asyncio.sleep(min(max(wait, 1.0), _WAKE_S))
