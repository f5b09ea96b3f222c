"""Live input: one validation for every path (HTTP batch, OsmAnd, MQTT).

Each incoming event is checked with exactly the per-record rules that
``coverwatch replay`` applies to files (:func:`coverwatch.domain.records.check_record`),
then turned into a row for the store. The OsmAnd protocol (Traccar Client,
OsmAnd) is translated into the same event records first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coverwatch.domain.geometry import project_latlon
from coverwatch.domain.records import EventRecordError, RecordRules, check_record
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import CoverwatchError

__all__ = [
    "IngestProblem",
    "InvalidEvents",
    "osmand_json_records",
    "osmand_records",
    "validate_records",
]

_ALLOWED_FOR_DEVICE = frozenset({"fix", "duty"})


@dataclass(frozen=True, slots=True)
class IngestProblem:
    """One rejected event: its position in the request, the field and why."""

    index: int
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidEvents(CoverwatchError):
    """A request held invalid events; nothing from it was stored."""

    def __init__(self, problems: list[IngestProblem]) -> None:
        self.problems = problems
        first = problems[0]
        where = f"event {first.index}" + (f", field {first.field}" if first.field else "")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}: {first.message}{more}")


def validate_records(
    records: Sequence[Any],
    site: Site,
    *,
    now_us: int,
    max_future_us: int,
    device_officer: str | None = None,
    device: bool = False,
) -> list[dict[str, Any]]:
    """Check every record; return store rows, or raise :class:`InvalidEvents` listing all problems.

    A device may only send fixes and duty for its own officer; if it leaves
    ``officer`` out, the device's officer is filled in.
    """
    rules = RecordRules.of(site)
    rows: list[dict[str, Any]] = []
    problems: list[IngestProblem] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            problems.append(IngestProblem(i, None, "expected a JSON object"))
            continue
        if device:
            kind = rec.get("kind")
            # isinstance first: an unhashable kind (a list) must not raise here.
            if not isinstance(kind, str) or kind not in _ALLOWED_FOR_DEVICE:
                problems.append(
                    IngestProblem(i, "kind", "a device may only send fix and duty events")
                )
                continue
            if "officer" not in rec and device_officer is not None:
                rec = {**rec, "officer": device_officer}
            elif device_officer is None or rec.get("officer") != device_officer:
                problems.append(IngestProblem(
                    i, "officer", f"this device reports for officer {device_officer!r} only"))
                continue
        try:
            checked = check_record(rec, rules)
        except EventRecordError as e:
            problems.append(IngestProblem(i, e.field, e.message))
            continue
        if checked.t > now_us + max_future_us:
            problems.append(IngestProblem(
                i, "t",
                f"time {format_time(checked.t)} is more than {max_future_us / US_PER_S:g} s "
                f"ahead of the server clock ({format_time(now_us)}); check the device clock",
            ))
            continue
        x, y = checked.x, checked.y
        if checked.kind == "fix" and math.isnan(x):
            assert site.origin is not None  # check_record refuses lat/lon without an origin
            px, py = project_latlon(
                np.asarray([checked.lat]), np.asarray([checked.lon]),
                site.origin.lat, site.origin.lon,
            )
            x, y = float(px[0]), float(py[0])
        rows.append({
            "kind": checked.kind,
            "t_us": checked.t,
            "officer": checked.officer,
            "x": x if checked.kind == "fix" else None,
            "y": y if checked.kind == "fix" else None,
            "accuracy": checked.accuracy if checked.kind == "fix" else None,
            "post": checked.name if checked.kind == "gate" else None,
            "flag": checked.name if checked.kind == "flag" else None,
            "on": checked.state if checked.kind in ("duty", "flag") else None,
            "open": checked.state if checked.kind == "gate" else None,
            "capabilities": sorted(checked.capabilities) if checked.kind == "duty" else None,
            "raw": dict(rec),
        })
    if problems:
        raise InvalidEvents(problems)
    return rows


# -- OsmAnd / Traccar Client ------------------------------------------------------


def _osmand_time(value: str) -> Any:
    """OsmAnd timestamps: epoch seconds, milliseconds if >= 2^31, or ISO-8601."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if number >= 2**31:
        number /= 1000.0
    return number


def _num(params: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = params.get(name)
        if value is None or value == "":
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidEvents([IngestProblem(0, name, f"expected a number, got {value!r}")]) \
                from None
    return None


def osmand_records(params: Mapping[str, Any], officer: str) -> list[dict[str, Any]]:
    """Translate OsmAnd query/form parameters into one fix record for ``officer``.

    Accepts ``lat``/``lon`` or ``location=lat,lon``, ``timestamp`` (epoch s or
    ms, or ISO-8601) and ``accuracy`` (metres). ``valid=false`` means the
    device had no position: refused, so it is never counted as a fix.
    """
    valid = str(params.get("valid", "true")).lower()
    if valid in ("false", "0"):
        raise InvalidEvents([IngestProblem(0, "valid", "the device reports no valid position")])
    lat = _num(params, "lat", "latitude")
    lon = _num(params, "lon", "longitude")
    location = params.get("location")
    if (lat is None or lon is None) and location:
        parts = str(location).split(",")
        if len(parts) != 2:
            raise InvalidEvents([IngestProblem(0, "location", "expected location=lat,lon")])
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError:
            raise InvalidEvents([IngestProblem(0, "location", "expected location=lat,lon")]) \
                from None
    if lat is None or lon is None:
        raise InvalidEvents([IngestProblem(0, "lat", "missing lat/lon (or location)")])
    stamp = params.get("timestamp")
    if stamp is None or stamp == "":
        raise InvalidEvents([IngestProblem(0, "timestamp", "missing timestamp")])
    record: dict[str, Any] = {
        "t": _osmand_time(str(stamp)),
        "kind": "fix",
        "officer": officer,
        "lat": lat,
        "lon": lon,
    }
    accuracy = _num(params, "accuracy")
    if accuracy is not None:
        record["accuracy_m"] = accuracy
    return [record]


def osmand_json_records(body: Any, officer: str) -> list[dict[str, Any]]:
    """Translate a Traccar Client (9+) JSON body into fix records for ``officer``."""
    if not isinstance(body, Mapping):
        raise InvalidEvents([IngestProblem(0, None, "expected a JSON object")])
    locations = body.get("location")
    if isinstance(locations, Mapping):
        locations = [locations]
    if not isinstance(locations, list) or not locations:
        raise InvalidEvents([IngestProblem(0, "location", "missing location object")])
    out: list[dict[str, Any]] = []
    for i, loc in enumerate(locations):
        if not isinstance(loc, Mapping):
            raise InvalidEvents([IngestProblem(i, "location", "expected an object")])
        coords = loc.get("coords")
        if not isinstance(coords, Mapping):
            raise InvalidEvents([IngestProblem(i, "location.coords", "missing coords")])
        record: dict[str, Any] = {
            "t": loc.get("timestamp"),
            "kind": "fix",
            "officer": officer,
            "lat": coords.get("latitude"),
            "lon": coords.get("longitude"),
        }
        if coords.get("accuracy") is not None:
            record["accuracy_m"] = coords.get("accuracy")
        out.append(record)
    return out
