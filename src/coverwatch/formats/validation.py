"""Live input: one validation for every path (HTTP batch, OsmAnd, MQTT).

Each incoming event is checked with exactly the per-record rules that
``coverwatch replay`` applies to files (:func:`coverwatch.domain.records.check_record`),
then turned into a row for the store. What phone apps send (Traccar Client,
OsmAnd) is translated into the same event records first by
:mod:`coverwatch.server.devices`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import isfinite
from typing import Any

import numpy as np

from coverwatch.domain.fixbatch import FixBatch
from coverwatch.domain.geometry import project_latlon
from coverwatch.domain.records import (
    MAX_DEPTH,
    MAX_NAME_CHARS,
    EventRecordError,
    RecordRules,
    check_record,
    nesting_depth,
)
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import CoverwatchError

__all__ = [
    "IngestProblem",
    "InvalidEvents",
    "plain_fix_batch",
    "validate_records",
]

_ALLOWED_FOR_DEVICE = frozenset({"fix", "duty", "alarm", "scan"})


def _alarm_report(i: int, rec: Mapping[str, Any], alarm: Any, sender: str | None,
                  problems: list[IngestProblem]) -> dict[str, Any] | None:
    """The device report an alarm in a batch/MQTT record makes (strictly checked)."""
    from coverwatch.domain.time import parse_time

    if not isinstance(alarm, str) or not alarm.strip() or len(alarm) > 40:
        problems.append(IngestProblem(i, "alarm", "expected an alarm name such as \"sos\""))
        return None
    officer = rec.get("officer")
    if not isinstance(officer, str) or not officer:
        problems.append(IngestProblem(i, "officer", "missing officer"))
        return None
    try:
        t = None if rec.get("t") is None else parse_time(rec.get("t"))
    except ValueError as e:
        problems.append(IngestProblem(i, "t", str(e)))
        return None
    return {"device": sender or "unknown", "officer": officer, "t_us": t, "alarm": alarm.strip(),
            "used": False, "battery": None, "charging": None, "reason": None,
            "raw": dict(rec)}


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


# A plain fix: nothing but these fields (no alarm, no lat/lon, no nesting to walk).
_PLAIN_FIX_KEYS = frozenset(("t", "kind", "officer", "x", "y", "accuracy_m"))


def _plain_time(value: str) -> int | None:
    """The record rules' time of ``value``, or None where they refuse it (said below)."""
    try:
        return check_record({"kind": "flag", "t": value, "flag": "_", "on": True},
                            _TIME_ONLY).t
    except EventRecordError:
        return None


_TIME_ONLY = RecordRules(frozenset(), frozenset(), frozenset(("_",)), None)
_FILE_ACCURACY_SOURCES = ("reported", "hdop", "hdop-scaled", "default")
# The rules of the site checked last: a phone's upload checks one record, and building
# the rules' sets each time was a twentieth of its cost (issue 25). Sites are frozen.
_last_rules: tuple[Site, RecordRules] | None = None


def _rules_of(site: Site) -> RecordRules:
    global _last_rules
    last = _last_rules
    if last is not None and last[0] is site:
        return last[1]
    rules = RecordRules.of(site)
    _last_rules = (site, rules)
    return rules


def plain_fix_batch(records: Sequence[Any], *, now_us: int, max_future_us: int
                    ) -> FixBatch | None:
    """A non-device sender's batch of nothing but plain fixes, checked column by column
    with the rules :func:`validate_records` applies to each (issue 25); None where any
    record is anything else or fails a rule (that path then says which and why).

    Each test is over a whole column at C speed (the types in it, one join for the
    names, one sum for finiteness: any NaN or infinity, or an overflow, makes it
    non-finite and sends the batch the row path's way)."""
    if not records or set(map(type, records)) != {dict}:
        return None
    if not set().union(*records) <= _PLAIN_FIX_KEYS \
            or {r.get("kind") for r in records} != {"fix"}:
        return None
    officers = [r.get("officer") for r in records]
    xs = [r.get("x") for r in records]
    ys = [r.get("y") for r in records]
    accs = [r.get("accuracy_m") for r in records]
    texts = [r.get("t") for r in records]
    if (set(map(type, officers)) != {str} or set(map(type, xs)) != {float}
            or set(map(type, ys)) != {float} or set(map(type, texts)) != {str}):
        return None
    if min(map(len, officers)) == 0 or max(map(len, officers)) > MAX_NAME_CHARS \
            or not "".join(officers).isprintable() \
            or not isfinite(sum(xs)) or not isfinite(sum(ys)):
        return None
    if None in accs:
        reported = [a is not None for a in accs]
        given = [a for a in accs if a is not None]
        accs = [0.0 if a is None else a for a in accs]
    else:
        reported = [True] * len(accs)
        given = accs
    if given and (set(map(type, given)) != {float} or not isfinite(sum(given))
                  or min(given) < 0):
        return None
    latest = now_us + max_future_us
    times: dict[str, int] = {}
    for text in set(texts):
        t = _plain_time(text)
        if t is None or t > latest:
            return None
        times[text] = t
    return FixBatch(list(map(times.__getitem__, texts)), officers, xs, ys, accs, reported,
                    list(records))


def validate_records(
    records: Sequence[Any],
    site: Site,
    *,
    now_us: int,
    max_future_us: int,
    device_officer: str | None = None,
    device: bool = False,
    reports: list[dict[str, Any]] | None = None,
    sender: str | None = None,
) -> list[dict[str, Any]]:
    """Check every record; return store rows, or raise :class:`InvalidEvents` listing all problems.

    A device may only send fixes, duty and alarms for its own officer; if it
    leaves ``officer`` out, the device's officer is filled in, and a fix with
    no ``accuracy_m`` gets the site's ``default_accuracy_m`` (never 0).

    With ``reports`` given, alarms are accepted: a fix with an ``alarm`` field,
    or a record ``{"kind": "alarm", "t", "officer", "alarm"}`` (no position),
    each adds a device report (of ``sender``) to ``reports``.
    """
    rules = _rules_of(site)
    rows: list[dict[str, Any]] = []
    problems: list[IngestProblem] = []
    times: dict[Any, int | None] = {}  # a batch's fixes share few distinct times
    latest = now_us + max_future_us
    for i, rec in enumerate(records):
        # The usual record, a plain fix from a non-device sender, checked inline with the
        # same rules (issue 25); anything unusual or wrong takes the full path below,
        # which names the field.
        if not device and type(rec) is dict and rec.keys() <= _PLAIN_FIX_KEYS \
                and rec.get("kind") == "fix":
            officer, x, y = rec.get("officer"), rec.get("x"), rec.get("y")
            acc = rec.get("accuracy_m")
            t_text = rec.get("t")
            t = times.get(t_text, -1) if isinstance(t_text, str) else None
            if t == -1:
                t = times[t_text] = _plain_time(str(t_text))
            if (t is not None and t <= latest and type(officer) is str and officer
                    and len(officer) <= MAX_NAME_CHARS and officer.isprintable()
                    and type(x) is float and type(y) is float and isfinite(x) and isfinite(y)
                    and (acc is None or (type(acc) is float and isfinite(acc) and acc >= 0))):
                rows.append({
                    "kind": "fix", "accuracy_source": "none" if acc is None else "reported",
                    "t_us": t, "officer": officer, "x": x, "y": y,
                    "accuracy": 0.0 if acc is None else acc, "post": None, "flag": None,
                    "on": None, "open": None, "capabilities": None, "raw": dict(rec),
                })
                continue
        if not isinstance(rec, Mapping):
            problems.append(IngestProblem(i, None, "expected a JSON object"))
            continue
        kind = rec.get("kind")
        if device:
            # isinstance first: an unhashable kind (a list) must not raise here.
            if not isinstance(kind, str) or kind not in _ALLOWED_FOR_DEVICE:
                problems.append(IngestProblem(
                    i, "kind", "a device may only send fix, duty, scan and alarm events"))
                continue
            if "officer" not in rec and device_officer is not None:
                rec = {**rec, "officer": device_officer}
            elif device_officer is None or rec.get("officer") != device_officer:
                problems.append(IngestProblem(
                    i, "officer", f"this device reports for officer {device_officer!r} only"))
                continue
        alarm = rec.get("alarm")
        if alarm is not None or kind == "alarm":
            if reports is None:
                problems.append(IngestProblem(i, "alarm", "alarms are not accepted here"))
                continue
            if kind == "alarm":  # check_record (and its depth rule) never sees these
                depth, where = nesting_depth(rec)
                if depth > MAX_DEPTH:
                    problems.append(IngestProblem(
                        i, where.split(".")[0].split("[")[0] or None,
                        f"values nest more than {MAX_DEPTH} deep (at {where})"))
                    continue
            report = _alarm_report(i, rec, alarm, sender, problems)
            if report is None:
                continue
            if kind == "alarm":
                reports.append(report)
                continue
        else:
            report = None
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
        accuracy = checked.accuracy
        accuracy_source = None
        if checked.kind == "fix":
            # A scan's accuracy is its checkpoint's, surveyed: never a phone default.
            if rec.get("kind") == "scan":
                accuracy_source = "reported"
            elif rec.get("accuracy_m") is not None and not (device and accuracy <= 0):
                # A file reader (GPX) says where it found the accuracy; a device cannot.
                given = None if device else rec.get("accuracy_source")
                accuracy_source = given if given in _FILE_ACCURACY_SOURCES else "reported"
            elif device:  # a phone that says nothing (or 0) about accuracy is not exact
                accuracy, accuracy_source = site.default_accuracy_m, "default"
            else:  # the event contract: absent means 0
                accuracy_source = "none"
        rows.append({
            "kind": checked.kind,
            "accuracy_source": accuracy_source,
            "t_us": checked.t,
            "officer": checked.officer,
            "x": x if checked.kind == "fix" else None,
            "y": y if checked.kind == "fix" else None,
            "accuracy": accuracy if checked.kind == "fix" else None,
            "post": checked.name if checked.kind == "gate" else None,
            "flag": checked.name if checked.kind == "flag" else None,
            "on": checked.state if checked.kind in ("duty", "flag") else None,
            "open": checked.state if checked.kind == "gate" else None,
            "capabilities": sorted(checked.capabilities) if checked.kind == "duty" else None,
            "raw": dict(rec),
        })
        if report is not None and reports is not None:
            report["used"] = True
            report["_fix"] = rows[-1]
            reports.append(report)
    if problems:
        raise InvalidEvents(problems)
    return rows
