"""A checkpoint scan replayed from a JSONL file and the same scan sent live give
identical lapses, and the scan's accuracy grows at the site's ``scan_walk_mps``
on both paths: an officer who scanned a tag 25 m from a post stops counting for
it once they could have walked out of the rule's radius (docs/tours.md).

Also the history report (reports/history.py) over the stored events, which feeds
the engine through the same stored-row path as the live server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import Database
from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.formats.eventfiles import read_events, sorted_events
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.history import recompute
from coverwatch.reports.replay import lapse_record, replay_sorted
from coverwatch.storage.versions import SiteVersion
from serverkit import FakeClock, base_settings, running_server

# The tag is 25 m from the door, surveyed to 1 m; the door's radius is 56 m. At the
# site's 1.5 m/s the scan counts while 25 + 1 + 1.5·Δt <= 56: for 20 s. An ordinary
# fix there would count until stale (120 s).
SITE = """\
site: scan-walk
name: Scan walk (fictional)
stale_after_s: 120
timezone: UTC
scan_walk_mps: {walk}
posts:
  - id: door
    at: [0, 0]
    rules:
      - id: cover
        need: 1
        within_m: 56
checkpoints:
  - id: tag
    at: [25, 0]
    kind: nfc
    accuracy_m: 1
"""


def _site(tmp_path: Path, walk: float) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(walk=walk), "utf-8")
    return path


def _events(t0: int) -> list[dict[str, Any]]:
    return [
        {"t": format_time(t0), "kind": "duty", "officer": "P1", "on": True},
        {"t": format_time(t0 + 10 * US_PER_S), "kind": "scan", "officer": "P1",
         "checkpoint": "tag"},
    ]


def _replayed(site_path: Path, events: list[dict[str, Any]], until: int,
              tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    site = load_site(site_path)
    result = replay_sorted(site, sorted_events(read_events(path, site, OfficerRegistry())),
                           until=until)
    return [lapse_record(lp) for lp in result.lapses]


@pytest.mark.parametrize("walk", [1.5, 3.0])
def test_scan_replayed_and_live_give_the_same_lapses_and_the_cover_ends_at_walking_reach(
        tmp_path: Path, migrated: Database, walk: float) -> None:
    site_path = _site(tmp_path, walk)
    clock = FakeClock()
    t0 = clock() + US_PER_S
    events = _events(t0)
    settings = base_settings(site_path, migrated.data_dir / "data", db_url=migrated.url)
    with running_server(settings, clock) as kit:
        ingest = kit.api_token("gateway", "ingest")
        kit.clock.now = t0 + 11 * US_PER_S
        r = kit.post_events(ingest, events)
        assert r.status_code == 200, r.text
        kit.tick()
        kit.clock.now = t0 + 90 * US_PER_S  # past the cut-off, before the fix goes stale
        kit.tick()
        horizon = kit.svc.live.horizon
        live = [lapse_record(lp) for lp in kit.svc.live.lapses(include_open=True)]
        report = recompute(kit.svc.store, [SiteVersion(0, site_path.read_text("utf-8"))],
                           until=horizon - 1, checkpoints=False)
        history = [lapse_record(lp) for lp in report.lapses]
    replayed = _replayed(site_path, events, horizon - 1, tmp_path)
    assert live == replayed
    assert history == replayed
    # On duty from t0 with no fix: a lapse until the scan; the scan counts for
    # (56 - 25 - 1) / walk seconds (up to and including that instant), then a lapse
    # again, still open.
    cut = t0 + 10 * US_PER_S + round(30 / walk * US_PER_S)
    assert [(lp["post"], lp["start"], lp["end"]) for lp in live] == [
        ("door", format_time(t0), format_time(t0 + 10 * US_PER_S)),
        ("door", format_time(cut + 1), None),
    ]


def test_a_non_positive_walking_speed_is_refused_naming_file_line_and_field(
        tmp_path: Path) -> None:
    from coverwatch.formats.sitefile import SiteFileError

    path = _site(tmp_path, 0)
    with pytest.raises(SiteFileError) as err:
        load_site(path)
    assert f"{path}:5:" in str(err.value)
    assert "scan_walk_mps" in str(err.value) and "> 0" in str(err.value)


def test_the_default_walking_speed_is_1_5_m_per_s(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("scan_walk_mps: {walk}\n", ""), "utf-8")
    assert load_site(path).scan_walk_mps == 1.5
