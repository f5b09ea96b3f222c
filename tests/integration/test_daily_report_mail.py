"""The daily activity report by mail from the server: sent once at its time with the PDF
and CSV attached, not again after a restart, a day missed while the server was down sent
when it starts, and a day that reached nobody audited and tried again. A fake clock; a
real SMTP server (aiosmtpd) behind Apprise's mailto://."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.formats.sitefile import load_site
from coverwatch.notify.notifier import Notifier
from coverwatch.reports.schedule import (
    LAST_SENT,
    DailyMailer,
    check_schedule,
    due_days,
    next_due_us,
    parse_at,
)
from coverwatch.storage import Store, open_store
from coverwatch.storage.versions import SiteVersion, save_versions
from receivers import Mailbox, mailbox

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"
SITE = load_site(YARD)  # Europe/London: UTC in January


class Clock:
    def __init__(self, iso: str) -> None:
        self.now = parse_time(iso)

    def set(self, iso: str) -> None:
        self.now = parse_time(iso)

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    with mailbox() as box:
        yield box


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path / "data")
    save_versions(s, [SiteVersion(0, YARD.read_text(encoding="utf-8"))])
    s.append_events([{"kind": "duty", "t_us": parse_time("2027-01-15T09:00:00Z"),
                      "officer": "A1", "on": True, "source": "t"}])
    yield s
    s.close()


def _mailer(store: Store, smtp: Mailbox, clock: Clock, to: str = "user:sam") -> DailyMailer:
    people = {"user:sam": [("sam", smtp.url("sam@example.org"))], "user:kim": [("kim", None)]}
    notifier = Notifier(lambda t: people.get(t, []), site=SITE, timezone=SITE.timezone,
                        timeout_s=5, retries=0)
    return DailyMailer(store, notifier, lambda: SITE, YARD.read_text(encoding="utf-8"),
                       parse_at("07:05"), (to,), clock, public_url="https://cover.example.org")


def _audit(store: Store, prefix: str) -> list[dict[str, object]]:
    return [{"action": e.action, **e.details} for e in store.audit_entries(0, 1000)
            if e.action.startswith(prefix)]


def test_sent_once_at_its_time_not_again_after_a_restart_and_a_missed_day_caught_up(
    store: Store, smtp: Mailbox,
) -> None:
    clock = Clock("2027-01-16T06:00:00Z")
    assert asyncio.run(_mailer(store, smtp, clock).send_due()) == []  # enabled: nothing yet
    assert smtp.messages == []
    clock.set("2027-01-16T07:04:59Z")
    mailer = _mailer(store, smtp, clock)
    assert asyncio.run(mailer.send_due()) == []
    clock.set("2027-01-16T07:05:00Z")
    assert asyncio.run(mailer.send_due()) == ["2027-01-15"]
    (mail,) = smtp.to("sam@example.org")
    assert "2027-01-15" in mail["Subject"]
    names = sorted(p.get_filename() for p in mail.walk() if p.get_filename())
    assert names == ["daily-harbour-yard-2027-01-15.csv", "daily-harbour-yard-2027-01-15.pdf"]
    pdf = next(p for p in mail.walk() if p.get_filename() == names[1])
    assert pdf.get_payload(decode=True).startswith(b"%PDF")
    body = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    assert "https://cover.example.org/api/v1/records/daily?date=2027-01-15" in \
        body.get_payload(decode=True).decode()
    # Later that day, and after a restart (a new mailer on the same store): not again.
    clock.set("2027-01-16T12:00:00Z")
    assert asyncio.run(mailer.send_due()) == []
    assert asyncio.run(_mailer(store, smtp, clock).send_due()) == []
    assert len(smtp.messages) == 1
    (sent,) = _audit(store, "records.daily.")
    assert sent["action"] == "records.daily.sent" and sent["day"] == "2027-01-15"
    assert sent["delivered"] == [{"person": "sam", "to": sent["delivered"][0]["to"]}]
    # The server was down over 2027-01-17 07:05: both days go out when it starts.
    clock.set("2027-01-18T09:00:00Z")
    assert asyncio.run(_mailer(store, smtp, clock).send_due()) == ["2027-01-16", "2027-01-17"]
    assert [m["Subject"][-10:] for m in smtp.to("sam@example.org")] == [
        "2027-01-15", "2027-01-16", "2027-01-17"]
    assert store.get_state(LAST_SENT) == "2027-01-17"


def test_a_day_that_reached_nobody_is_audited_and_tried_again(
    store: Store, smtp: Mailbox,
) -> None:
    clock = Clock("2027-01-16T06:00:00Z")
    mailer = _mailer(store, smtp, clock, to="user:kim")  # kim has no contact address
    asyncio.run(mailer.send_due())
    clock.set("2027-01-16T08:00:00Z")
    assert asyncio.run(mailer.send_due()) == []
    (failed,) = _audit(store, "records.daily.")
    assert failed["action"] == "records.daily.failed" and failed["delivered"] == []
    assert failed["failed"][0]["person"] == "kim"  # type: ignore[index]
    assert store.get_state(LAST_SENT) == "2027-01-14"  # not marked sent
    clock.set("2027-01-16T08:30:00Z")
    assert asyncio.run(mailer.send_due()) == []  # waits before trying again
    assert len(_audit(store, "records.daily.")) == 1
    mailer.targets = ("user:sam",)  # someone fixed the recipient
    clock.set("2027-01-16T09:00:01Z")
    assert asyncio.run(mailer.send_due()) == ["2027-01-15"]
    assert len(smtp.messages) == 1


def test_due_days_and_next_due() -> None:
    at = parse_at("07:05")
    now = parse_time("2027-01-16T07:05:00Z")
    assert due_days(now, "Europe/London", at, "2027-01-14") == ["2027-01-15"]
    assert due_days(now - 1, "Europe/London", at, "2027-01-14") == []
    assert due_days(now, "Europe/London", at, "2026-12-01") == [
        f"2027-01-{d:02d}" for d in range(9, 16)]  # at most a week back
    assert next_due_us(now, "Europe/London", at) == now + 86_400 * US_PER_S
    assert next_due_us(now - 1, "Europe/London", at) == now
    for bad in ("7:05", "25:00", "07-05"):
        with pytest.raises(ValueError):
            parse_at(bad)
    with pytest.raises(ValueError):
        check_schedule("07:05", ())
    check_schedule(None, ())


def test_the_server_sends_a_missed_day_when_it_starts(tmp_path: Path, smtp: Mailbox) -> None:
    from serverkit import FakeClock, base_settings, running_server, write_site

    data = tmp_path / "data"
    before = open_store(None, data)
    before.set_state(LAST_SENT, "2030-01-01")  # the server was down on 2030-01-03 07:05
    before.close()
    settings = base_settings(write_site(tmp_path), data, daily_report_at="07:05",
                             daily_report_to=(smtp.url("ops@example.org"),),
                             notify_retries=0)
    with running_server(settings, FakeClock("2030-01-03T08:00:00Z")) as kit:
        store = kit.app.state.site_unit.store
        for _ in range(400):  # wait for the background task (bounded); no timing asserted
            if store.get_state(LAST_SENT) == "2030-01-02":
                break
            time.sleep(0.05)
        assert store.get_state(LAST_SENT) == "2030-01-02"
        assert [a["day"] for a in _audit(store, "records.daily.sent")] == ["2030-01-02"]
    (mail,) = smtp.to("ops@example.org")
    assert mail["Subject"].endswith("2030-01-02")


def test_serve_refuses_a_bad_schedule(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from coverwatch.cli import app

    for args in (["--daily-report-at", "7:05", "--daily-report-to", "role:supervisor"],
                 ["--daily-report-at", "07:05"]):
        r = CliRunner().invoke(app, ["serve", "--site", str(YARD), "--data-dir",
                                     str(tmp_path), *args])
        assert r.exit_code == 2, r.output
