"""The per-client tables of docs/interop.md and docs/events.md say what the code does.

Every table preceded by ``<!-- client: KEY -->`` is parsed; each row's ``sent`` cell goes
through that client's reader with a site default accuracy of 50 m, and the result must be
the row's ``accuracy_m``, ``accuracy_source``, ``battery`` and ``fix`` cells.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from coverwatch.domain.site import LatLon, Post, Rule, Site
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.formats.gpx import GpxOptions, gpx_records
from coverwatch.formats.osmand import osmand_body_readings, osmand_readings
from coverwatch.formats.owntracks import owntracks_readings, owntracks_records
from coverwatch.formats.validation import InvalidEvents, validate_records
from coverwatch.server.devices import device_upload

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "interop.md", ROOT / "docs" / "events.md")
NOW = parse_time("2030-01-01T08:00:00Z")
_RULE = Rule("cover", 1, within_m=25.0, release_m=25.0)
SITE = Site("s", "S", (Post("gate", "Gate", (_RULE,), at=(0.0, 0.0)),),
            origin=LatLon(51.5, -0.12), default_accuracy_m=50.0)
_MARK = re.compile(r"<!-- client: ([a-z-]+) -->")


def _rows() -> list[tuple[str, str, list[str]]]:
    out: list[tuple[str, str, list[str]]] = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            mark = _MARK.fullmatch(line.strip())
            if mark is None:
                continue
            header = [c.strip() for c in lines[n + 1].strip("|").split("|")]
            assert header == ["sent", "accuracy_m", "accuracy_source", "battery", "fix"], doc
            for row in lines[n + 3:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
                out.append((f"{doc.name}:{mark.group(1)}", mark.group(1), cells))
    return out


ROWS = _rows()


def test_every_client_has_a_table() -> None:
    assert {key for _, key, _ in ROWS} == {
        "osmand-query", "osmand-json", "sdk-array", "owntracks", "gpx", "gpx-osmand",
        "events-file", "events-device"}


def _device(readings: list[Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    up = device_upload(readings, SITE, officer="A1", device="p", received_us=NOW,
                       max_future_us=30 * US_PER_S)
    (report,) = up.reports
    return (up.rows[0] if up.rows else None), report


def _gpx(sent: str, creator: str, tmp: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    path = tmp / "t.gpx"
    path.write_text(f'<?xml version="1.0"?><gpx version="1.1" creator="{creator}" '
                    'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>A1</name><trkseg>'
                    f'<trkpt lat="51.5" lon="-0.12"><time>2030-01-01T08:00:00Z</time>{sent}'
                    '</trkpt></trkseg></trk></gpx>')
    (_, rec), = gpx_records(path, GpxOptions(track_duty=False), default_accuracy_m=50.0)
    (row,) = validate_records([rec], SITE, now_us=NOW, max_future_us=0)
    return row, {"battery": None, "reason": None}


def _record(sent: str, device: bool) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    rec = {"t": NOW / US_PER_S, "kind": "fix", "officer": "A1", "lat": 51.5, "lon": -0.12,
           **orjson.loads(sent)}
    try:
        (row,) = validate_records([rec], SITE, now_us=NOW, max_future_us=0,
                                  device_officer="A1" if device else None, device=device)
    except InvalidEvents as e:
        return None, {"battery": None, "reason": e.problems[0].message}
    return row, {"battery": None, "reason": None}


def _read(key: str, sent: str, tmp: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if key == "osmand-query":
        return _device(osmand_readings(dict(parse_qsl(sent))))
    if key in ("osmand-json", "sdk-array"):
        return _device(osmand_body_readings(orjson.loads(sent)))
    if key == "owntracks":
        payload = {"tst": NOW // US_PER_S, **orjson.loads(sent)}
        return _device(owntracks_readings(owntracks_records(payload, "A1",
                                                             default_accuracy_m=50.0)))
    if key in ("gpx", "gpx-osmand"):
        return _gpx(sent, "OsmAnd~ 4.6" if key == "gpx-osmand" else "GPSLogger 131", tmp)
    return _record(sent, device=key == "events-device")


def _num(cell: str) -> float | None:
    return None if cell == "—" else float(cell)


@pytest.mark.parametrize(("where", "key", "cells"), ROWS, ids=[f"{w}:{c[0][:40]}" for w, _, c
                                                                 in ROWS])
def test_table_row_is_what_the_code_does(where: str, key: str, cells: list[str],
                                         tmp_path: Path) -> None:
    sent, accuracy, source, battery, fix = cells
    row, report = _read(key, sent.strip("`"), tmp_path)
    if fix == "yes":
        assert row is not None, report["reason"]
        assert row["accuracy"] == pytest.approx(_num(accuracy))
        assert row["accuracy_source"] == source
    else:
        assert row is None
        assert fix.startswith("no: ")
        assert str(report["reason"]).startswith(fix[4:]), report["reason"]
    got = report["battery"]
    assert (None if got is None else float(got)) == _num(battery)
