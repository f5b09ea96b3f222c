"""OwnTracks messages (HTTP and MQTT mode) translated into event records.

OwnTracks sends JSON objects tagged by ``_type``. Only ``location`` is used:
``lat``, ``lon``, ``tst`` (epoch seconds) and ``acc`` (metres) make a fix for
the device's officer; :func:`owntracks_readings` makes each location a device
reading for the one device-report path (``server/devices.device_upload``), so
``batt`` and ``bs`` become the report's battery and charging, and ``tid``,
``conn``, ``vac``, ``vel``, ``cog``, ``alt`` and any other field are kept in its
raw record. An empty payload (the booklet allows one) is no message. Every other
``_type`` (``transition``, ``waypoint``, ``waypoints``, ``card``, ``lwt``,
``status``, ...) is accepted and not used: coverwatch decides cover from
positions, not from the phone's own region events. A missing or 0 ``acc``
becomes the site's default accuracy, never 0 m. See docs/interop.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverwatch.errors import CoverwatchError
from coverwatch.formats.accuracy import choose_accuracy
from coverwatch.formats.osmand import Reading, reading_number

__all__ = ["OwnTracksError", "OwnTracksMessage", "owntracks_readings", "owntracks_records"]

#: OwnTracks field -> event record field; everything else is kept only as raw.
_FIELDS = (("tst", "t"), ("lat", "lat"), ("lon", "lon"))


class OwnTracksError(CoverwatchError, ValueError):
    """The payload is not an OwnTracks message at all (not a JSON object, no ``_type``)."""


@dataclass(frozen=True, slots=True)
class OwnTracksMessage:
    """What one payload means: fix records (zero or one each), or why nothing is used."""

    records: list[dict[str, Any]]
    ignored: list[str]
    locations: list[Mapping[str, Any]]  # each used location as sent (for device reports)

    @property
    def unreadable(self) -> bool:
        """True if a message was encrypted: positions are being lost, say so loudly."""
        return any(why.startswith("_type 'encrypted'") for why in self.ignored)


def _one(payload: Any, officer: str, default_accuracy_m: float) -> tuple[dict[str, Any] | None,
                                                                       str | None]:
    if not isinstance(payload, Mapping):
        raise OwnTracksError("expected a JSON object with a _type")
    kind = payload.get("_type")
    if not isinstance(kind, str) or not kind:
        raise OwnTracksError("missing _type (not an OwnTracks message)")
    if kind == "encrypted":
        return None, ("_type 'encrypted': the app has a secret encryption key set, which "
                      "coverwatch cannot read; clear the key in the app (use HTTPS or TLS instead)")
    if kind != "location":
        return None, f"_type {kind!r} is not used"
    record: dict[str, Any] = {"kind": "fix", "officer": officer}
    for theirs, ours in _FIELDS:
        if payload.get(theirs) is not None:
            record[ours] = payload[theirs]
    record["accuracy_m"], _ = choose_accuracy(default_accuracy_m, reported=payload.get("acc"))
    return record, None


def owntracks_records(payload: Any, officer: str, *, default_accuracy_m: float) -> OwnTracksMessage:
    """Translate one OwnTracks payload (an object, or a list of them) for ``officer``.

    Raises :class:`OwnTracksError` only when the payload is not OwnTracks at
    all; a location whose values are wrong is still translated, and the
    shared per-record rules (:func:`coverwatch.domain.records.check_record`)
    judge it like any other fix.
    """
    items = payload if isinstance(payload, list) else [payload]
    records: list[dict[str, Any]] = []
    ignored: list[str] = []
    locations: list[Mapping[str, Any]] = []
    for item in items:
        record, why = _one(item, officer, default_accuracy_m)
        if record is not None:
            records.append(record)
            locations.append(item)
        if why is not None:
            ignored.append(why)
    return OwnTracksMessage(records, ignored, locations)


# OwnTracks ``bs``: 0 unknown, 1 unplugged, 2 charging, 3 full (on the charger).
_CHARGING = {1: False, 2: True, 3: True}


def owntracks_readings(message: OwnTracksMessage) -> list[Reading]:
    """One device reading per location: position, ``tst``, ``acc``, ``batt`` and ``bs``."""
    out: list[Reading] = []
    for loc in message.locations:
        r = Reading(raw=dict(loc))
        for name in ("lat", "lon", "acc", "tst"):  # the booklet's numbers are JSON numbers
            value = loc.get(name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                r.problems.append(f"{name} is not a JSON number: {str(value)[:40]!r}")
        if r.problems:
            out.append(r)
            continue
        r.lat = reading_number(loc.get("lat"), "lat", r.problems)
        r.lon = reading_number(loc.get("lon"), "lon", r.problems)
        r.accuracy = reading_number(loc.get("acc"), "acc", r.problems)
        tst = loc.get("tst")
        r.time = tst if tst is not None else None
        if r.time is None:
            r.problems.append("missing tst (the location's time)")
        batt = reading_number(loc.get("batt"), "batt", [])
        r.battery = None if batt is None or batt < 0 else min(batt, 100.0)
        bs = loc.get("bs")
        r.charging = _CHARGING.get(bs) if isinstance(bs, int) else None
        out.append(r)
    return out
