"""What phones send, turned into fixes and device reports; the watermark over devices."""

from __future__ import annotations

import pytest

from coverwatch.domain.site import LatLon, Post, Rule, Site
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.formats.osmand import osmand_json_readings, osmand_readings
from coverwatch.formats.validation import InvalidEvents
from coverwatch.server.devices import DeviceWatch, device_upload

NOW = parse_time("2030-01-01T08:00:00Z")
_RULE = Rule("cover", 1, within_m=25.0, release_m=25.0)
SITE = Site("s", "S", (Post("gate", "Gate", (_RULE,), at=(0.0, 0.0)),),
            origin=LatLon(51.5, -0.12), default_accuracy_m=40.0)


def _upload(params: dict[str, str]) -> tuple[list[dict], list[dict]]:
    up = device_upload(osmand_readings(params), SITE, officer="A1", device="p",
                       received_us=NOW, max_future_us=30 * US_PER_S)
    return up.rows, up.reports


def test_accuracy_reported_then_hdop_then_site_default() -> None:
    base = {"lat": "51.5", "lon": "-0.12", "timestamp": str(NOW // US_PER_S)}
    rows, _ = _upload({**base, "accuracy": "7", "hdop": "30"})
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (7.0, "reported")
    rows, _ = _upload({**base, "hdop": "30"})
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (30.0, "hdop")
    rows, _ = _upload(base)
    assert (rows[0]["accuracy"], rows[0]["accuracy_source"]) == (40.0, "default")


@pytest.mark.parametrize(("params", "why"), [
    ({"lat": "abc", "lon": "-0.12"}, "lat is not a number"),
    ({"lat": "91", "lon": "-0.12"}, "latitude must be within"),
    ({"lat": "51.5", "lon": "-0.12", "valid": "false"}, "valid=false"),
    ({"batt": "50"}, "no position"),
    ({"lat": "51.5", "lon": "-0.12", "timestamp": "1000"}, "implausible"),
    ({"lat": "51.5", "lon": "-0.12", "timestamp": "yesterday"}, "time not understood"),
    ({"lat": "51.5", "lon": "-0.12", "timestamp": str(NOW // US_PER_S + 31)}, "ahead"),
])
def test_what_cannot_be_a_fix_is_a_report_with_its_reason(params: dict[str, str],
                                                          why: str) -> None:
    rows, (report,) = _upload(params)
    assert rows == []
    assert report["used"] is False and why in report["reason"]


def test_missing_timestamp_is_the_receive_time_marked() -> None:
    rows, (report,) = _upload({"lat": "51.5", "lon": "-0.12"})
    assert rows[0]["t_us"] == NOW and rows[0]["raw"]["time_source"] == "received"
    assert report["used"] is True and report["raw"]["time_source"] == "received"


def test_milliseconds_and_iso_times() -> None:
    rows, _ = _upload({"lat": "51.5", "lon": "-0.12", "timestamp": str(NOW // 1000 + 5)})
    assert rows[0]["t_us"] == NOW + 5000
    rows, _ = _upload({"lat": "51.5", "lon": "-0.12", "timestamp": "2030-01-01T07:59:59.5Z"})
    assert rows[0]["t_us"] == NOW - 500_000


def test_traccar_client_9_battery_and_alarm() -> None:
    (r,) = osmand_json_readings({"location": {
        "timestamp": "2030-01-01T08:00:00.000Z", "coords": {"latitude": 51.5, "longitude": -0.12},
        "battery": {"level": 0.5, "is_charging": False}, "extras": {"alarm": "sos"}}})
    assert (r.battery, r.charging, r.alarm) == (50.0, False, "sos")
    with pytest.raises(InvalidEvents):
        osmand_json_readings({"location": "x"})


def test_watermark_waits_for_active_devices_up_to_the_cap() -> None:
    watch = DeviceWatch(2 * US_PER_S, 10 * US_PER_S)
    assert watch.horizon(NOW) == NOW - 2 * US_PER_S  # no device: the floor lateness
    # A phone with a steady 6 s upload delay holds the horizon at its newest fix.
    watch.note({"device": "slow", "officer": "A1", "t_us": NOW - 6 * US_PER_S, "used": True},
               NOW)
    watch.note({"device": "quick", "officer": "A2", "t_us": NOW, "used": True}, NOW)
    assert watch.horizon(NOW) == NOW - 6 * US_PER_S
    # Never more than the cap behind the clock...
    watch.note({"device": "slow", "officer": "A1", "t_us": NOW - 30 * US_PER_S, "used": True},
               NOW)
    assert watch.horizon(NOW) == NOW - 6 * US_PER_S  # its newest time still counts
    assert watch.horizon(NOW + 5 * US_PER_S) == NOW - 5 * US_PER_S
    # ...and a device silent for longer than the cap no longer holds it.
    assert watch.horizon(NOW + 11 * US_PER_S) == NOW + 9 * US_PER_S
    # An unused report (no fix) says nothing about event time.
    watch.note({"device": "new", "officer": "A3", "t_us": NOW - 60 * US_PER_S, "used": False},
               NOW + 11 * US_PER_S)
    assert watch.horizon(NOW + 11 * US_PER_S) == NOW + 9 * US_PER_S
    delays = watch.delays()
    assert delays["slow"]["max_s"] == 30.0 and delays["quick"]["median_s"] == 0.0


def test_a_watch_takes_in_newer_stored_reports_only() -> None:
    """Distributed mode: the site's owner learns of reports other nodes received."""
    watch = DeviceWatch(2 * US_PER_S, 10 * US_PER_S)
    watch.note({"device": "p1", "officer": "A1", "t_us": 5 * US_PER_S, "used": True},
               6 * US_PER_S)
    watch.merge({
        "p1": {"device": "p1", "officer": "A1", "received_us": 4 * US_PER_S},  # older
        "p2": {"device": "p2", "officer": "B1", "received_us": 9 * US_PER_S},  # new device
    })
    assert watch.by_officer()["A1"][0][1].last_received == 6 * US_PER_S
    assert watch.by_officer()["B1"][0][1].last_received == 9 * US_PER_S
    watch.merge({"p1": {"device": "p1", "officer": "A1", "received_us": 12 * US_PER_S}})
    seen = watch.by_officer()["A1"][0][1]
    assert seen.last_received == 12 * US_PER_S and seen.last_t == 5 * US_PER_S
