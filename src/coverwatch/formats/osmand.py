"""The OsmAnd protocol: what phones and trackers upload, parsed into readings (one per
position report). :class:`Reading` is every device protocol's reading (OwnTracks too:
:func:`coverwatch.formats.owntracks.owntracks_readings`).

The OsmAnd protocol as Traccar Client 8/9/10, OsmAnd and the client SDK speak
it: query or form parameters, Traccar Client 9's JSON ``location`` object, and
the SDK's ``uploadJson`` array of flat readings. Nothing here refuses what a
phone measured: a value that is wrong becomes a ``problem`` of its reading, and
:func:`coverwatch.server.devices.device_upload` makes it a device report with
the reason. The device identifier (its token) is never kept in ``raw``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coverwatch.formats.validation import InvalidEvents

__all__ = [
    "Reading",
    "osmand_body_readings",
    "osmand_json_readings",
    "osmand_readings",
    "osmand_time",
    "reading_number",
]

_CREDENTIALS = ("id", "deviceid", "device_id")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(slots=True)
class Reading:
    """One reading from a device, as sent; anything may be missing or wrong.

    ``problems`` are things that stop it being a fix, found while parsing.
    """

    time: Any = None
    lat: Any = None
    lon: Any = None
    accuracy: Any = None
    hdop: Any = None
    valid: bool = True
    battery: float | None = None
    charging: bool | None = None
    alarm: str | None = None
    mock: bool = False  # the phone says the position is simulated (a mock location app)
    problems: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def reading_number(value: Any, name: str, problems: list[str]) -> float | None:
    """A device's number, None if absent; one that is not a finite number is a problem."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        problems.append(f"{name} is not a number: {value!r}")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name} is not a number: {str(value)[:40]!r}")
        return None
    if not math.isfinite(number):
        problems.append(f"{name} is not a finite number: {str(value)[:40]!r}")
        return None
    return number


def osmand_time(value: Any) -> Any:
    """OsmAnd timestamps: epoch seconds, milliseconds if >= 2^31, or ISO-8601."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return number / 1000.0 if abs(number) >= 2**31 else number


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _battery_percent(value: Any, *, fraction: bool) -> float | None:
    number = reading_number(value, "battery", [])
    if number is None or number < 0:
        return None
    # Traccar Client 9 reports 0..1; the form versions 0..100.
    if fraction and number <= 1.0:
        number *= 100.0
    return min(number, 100.0)


def osmand_readings(params: Mapping[str, Any]) -> list[Reading]:
    """One reading from OsmAnd query or form parameters (Traccar Client 8/10, OsmAnd, iOS)."""
    r = Reading(raw=_without_credentials(params))
    problems = r.problems
    r.valid = _flag(params.get("valid", "true")) is not False
    r.lat = reading_number(params.get("lat", params.get("latitude")), "lat", problems)
    r.lon = reading_number(params.get("lon", params.get("longitude")), "lon", problems)
    location = params.get("location")
    if (r.lat is None or r.lon is None) and location and not problems:
        parts = str(location).split(",")
        if len(parts) == 2:
            r.lat = reading_number(parts[0], "location", problems)
            r.lon = reading_number(parts[1], "location", problems)
        else:
            problems.append("location is not lat,lon")
    r.time = osmand_time(params.get("timestamp"))
    r.accuracy = reading_number(params.get("accuracy", params.get("hacc")), "accuracy", problems)
    r.hdop = reading_number(params.get("hdop"), "hdop", problems)
    r.battery = _battery_percent(params.get("batt", params.get("battery")), fraction=False)
    charge = params.get("charge", params.get("charging"))
    r.charging = None if charge is None else _flag(charge)
    alarm = params.get("alarm")
    r.alarm = str(alarm).strip()[:40] or None if alarm is not None else None
    r.mock = _flag(params.get("mock", "false")) is True
    return [r]


def _without_credentials(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields to keep as raw: never the device identifier, which is its token (nor the
    transistorsoft SDK's ``_`` copy of the query that carries it)."""
    return {k: v for k, v in fields.items() if k not in _CREDENTIALS
            and not (k == "_" and "id=" in str(v))}


def osmand_body_readings(body: Any) -> list[Reading]:
    """Readings from a JSON body: Traccar Client 9's ``{"location": ...}``, or an array of
    such objects or of flat OsmAnd parameter objects (the client SDK's ``uploadJson``)."""
    if not isinstance(body, list):
        return osmand_json_readings(body)
    if not body:
        raise InvalidEvents([_problem(None, "empty array: no reading")])
    out: list[Reading] = []
    for item in body:
        if not isinstance(item, Mapping):
            raise InvalidEvents([_problem(None, "expected an array of objects")])
        out += (osmand_json_readings(item) if "location" in item
                else osmand_readings({k: v for k, v in item.items() if v is not None}))
    return out


def osmand_json_readings(body: Any) -> list[Reading]:
    """Readings from a Traccar Client 9 JSON body (``location`` object or list)."""
    if not isinstance(body, Mapping):
        raise InvalidEvents([_problem(None, "expected a JSON object")])
    locations = body.get("location")
    if isinstance(locations, Mapping):
        locations = [locations]
    if not isinstance(locations, list) or not locations:
        raise InvalidEvents([_problem("location", "missing location object")])
    out: list[Reading] = []
    for loc in locations:
        if not isinstance(loc, Mapping):
            raise InvalidEvents([_problem("location", "expected an object")])
        r = Reading(raw=_without_credentials(loc))
        coords = loc.get("coords")
        coords = coords if isinstance(coords, Mapping) else {}
        r.lat = reading_number(coords.get("latitude"), "coords.latitude", r.problems)
        r.lon = reading_number(coords.get("longitude"), "coords.longitude", r.problems)
        r.accuracy = reading_number(coords.get("accuracy"), "coords.accuracy", r.problems)
        r.time = loc.get("timestamp")
        r.mock = loc.get("mock") is True
        battery = loc.get("battery")
        if isinstance(battery, Mapping):
            r.battery = _battery_percent(battery.get("level"), fraction=True)
            charging = battery.get("is_charging")
            r.charging = charging if isinstance(charging, bool) else None
        extras = loc.get("extras")
        if isinstance(extras, Mapping) and extras.get("alarm") is not None:
            r.alarm = str(extras["alarm"]).strip()[:40] or None
        out.append(r)
    return out


def _problem(field_name: str | None, message: str) -> Any:
    from coverwatch.formats.validation import IngestProblem

    return IngestProblem(0, field_name, message)

