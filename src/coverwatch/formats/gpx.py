"""GPX 1.1 tracks in and out: a track is one officer's fixes.

Reading: the XML is first checked by defusedxml (no DTD, so no entities or
external references; at most :data:`MAX_GPX_BYTES` and :data:`MAX_GPX_DEPTH`
levels deep), then parsed by gpxpy. Each ``<trk>`` is one officer, named by
the caller's ``officer`` option or the track's ``<name>``; every ``<trkpt>``
of every segment is a fix with its ``time`` (GPX times are UTC; a time
without a zone is read as UTC, as the GPX schema says), ``lat``/``lon`` and
accuracy (:func:`coverwatch.formats.accuracy.choose_accuracy`): an accuracy
extension above 0 (``accuracy``, ``acc``, ``accuracy_m``, ``hacc`` in any
namespace; ``reported``), else ``<hdop>``: metres in a file whose creator is
OsmAnd (``hdop``), otherwise the real, unitless HDOP (GPSLogger, Garmin, gpxpy)
scaled by :data:`~coverwatch.formats.accuracy.UERE_M` (``hdop-scaled``), else
the site's default accuracy (``default``). A value of 0 says nothing. No text
or attribute may be longer than :data:`MAX_GPX_FIELD_CHARS` (the error names
the point).
A GPX track carries no duty: unless ``track_duty`` is off or events are given
alongside (``alongside``: a JSONL, CSV or Parquet file with the duty, gate and
flag events), the officer is on duty from the track's first point to its
last, with the capabilities the caller gives (none by default). A file without
times is an error that says so.

Writing (:func:`write_gpx`): one ``<trk>`` per officer, the accuracy as it was
stored so that ``events import`` reads it back the same (a ``<cw:accuracy_m>``
extension for a reported accuracy, ``<hdop>`` for an HDOP-scaled one, nothing
for a site default), and waypoints for lapses and alerts.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as _safe_et
import gpxpy
import gpxpy.gpx
from defusedxml import DefusedXmlException

from coverwatch.errors import EventInputError
from coverwatch.formats.accuracy import UERE_M, choose_accuracy

__all__ = [
    "MAX_GPX_BYTES",
    "MAX_GPX_DEPTH",
    "MAX_GPX_FIELD_CHARS",
    "NAMESPACE",
    "GpxOptions",
    "GpxPoint",
    "GpxTrack",
    "GpxWaypoint",
    "gpx_records",
    "read_gpx_tracks",
    "write_gpx",
]

MAX_GPX_BYTES = 256 << 20
MAX_GPX_DEPTH = 32  # gpx/trk/trkseg/trkpt/extensions/ns:ext/ns:field is 7
MAX_GPX_FIELD_CHARS = 4096  # a name or description; coordinates and times are far shorter
_ACCURACY_TAGS = ("accuracy", "acc", "accuracy_m", "hacc", "horizontal_accuracy")
#: coverwatch's GPX extension namespace (the accuracy it wrote).
NAMESPACE = "https://coverwatch.dev/xmlschemas/gpx/1"
_NUMBERED = ("wpt", "rte", "rtept", "trk", "trkseg", "trkpt")


@dataclass(frozen=True, slots=True)
class GpxOptions:
    """How to read a GPX file as events (the CLI's options)."""

    officer: str | None = None
    capabilities: tuple[str, ...] = ()
    track_duty: bool = True
    #: Events given alongside the track (JSONL, CSV or Parquet: duty, gates, flags).
    #: When given, the track makes no duty of its own: the officer's duty is in them.
    alongside: Path | None = None


@dataclass(frozen=True, slots=True)
class GpxPoint:
    t: _dt.datetime
    lat: float
    lon: float
    accuracy_m: float | None  # None: the file gives none (the site default applies)
    accuracy_source: str = "default"


@dataclass(frozen=True, slots=True)
class GpxTrack:
    name: str | None
    points: list[tuple[str, GpxPoint]]  # (where in the file, point)


@dataclass(frozen=True, slots=True)
class GpxWaypoint:
    lat: float
    lon: float
    t: _dt.datetime | None
    name: str
    description: str = ""


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _depth_ok(root: Any, name: str) -> int:
    """The nesting depth; raises if a text or attribute is too long, naming where."""
    deepest = 0
    stack: list[tuple[Any, int, str]] = [(root, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_GPX_DEPTH:
            break
        values = [node.text or "", node.tail or "", *node.attrib.values()]
        if any(len(v) > MAX_GPX_FIELD_CHARS for v in values):
            raise EventInputError(name, None, where or None,
                                  f"<{_local(node.tag)}> holds a value longer than "
                                  f"{MAX_GPX_FIELD_CHARS} characters")
        seen: dict[str, int] = {}
        for child in node:
            local = _local(child.tag)
            at = where
            if local in _NUMBERED:
                at = f"{where}.{local}[{seen.get(local, 0)}]".lstrip(".")
                seen[local] = seen.get(local, 0) + 1
            elif where:
                at = f"{where}.{local}"
            else:
                at = local
            stack.append((child, depth + 1, at))
    return deepest


def _parse(path: Path) -> gpxpy.gpx.GPX:
    name = str(path)
    size = path.stat().st_size
    if size > MAX_GPX_BYTES:
        raise EventInputError(name, None, None,
                              f"GPX file is {size} bytes; at most {MAX_GPX_BYTES} are read")
    data = path.read_bytes()
    try:
        root = _safe_et.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise EventInputError(name, None, None,
                              f"refused: the GPX has a DTD or entities ({type(e).__name__})") \
            from None
    except _safe_et.ParseError as e:
        raise EventInputError(name, getattr(e, "position", (None,))[0], None,
                              f"not well-formed XML: {e}") from None
    if _depth_ok(root, name) > MAX_GPX_DEPTH:
        raise EventInputError(name, None, None,
                              f"XML nested deeper than {MAX_GPX_DEPTH} levels")
    if not str(root.tag).endswith("gpx"):
        raise EventInputError(name, None, None, f"not a GPX file: the root element is "
                                                f"{root.tag!r}, not 'gpx'")
    try:
        return gpxpy.parse(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise EventInputError(name, None, None, f"not valid UTF-8 at byte {e.start}") from None
    except gpxpy.gpx.GPXException as e:
        raise EventInputError(name, None, None, f"invalid GPX: {e}") from None


def _accuracy(point: gpxpy.gpx.GPXTrackPoint, hdop_in_metres: bool) -> tuple[float | None, str]:
    reported = None
    for ext in point.extensions:
        for node in ext.iter():
            if _local(node.tag).lower() in _ACCURACY_TAGS and node.text and node.text.strip():
                try:
                    reported = float(node.text)
                except ValueError:
                    continue
                if str(node.tag) == f"{{{NAMESPACE}}}accuracy_m" and reported >= 0:
                    return reported, "reported"  # coverwatch's own export: as it was stored
                break
        if reported is not None:
            break
    hdop = point.horizontal_dilution
    value, source = choose_accuracy(-1.0, reported=reported,
                                    hdop_m=hdop if hdop_in_metres else None,
                                    hdop=None if hdop_in_metres else hdop)
    return (None, source) if source == "default" else (value, source)


def _utc(t: _dt.datetime) -> _dt.datetime:
    if t.tzinfo is None:  # GPX times are UTC by the schema
        return t.replace(tzinfo=_dt.UTC)
    return t.astimezone(_dt.UTC)


def read_gpx_tracks(path: str | os.PathLike[str]) -> list[GpxTrack]:
    """Every track of a GPX file, with where each point is (``trk[i].trkseg[j].trkpt[k]``)."""
    file = Path(path)
    gpx = _parse(file)
    tracks: list[GpxTrack] = []
    # OsmAnd writes its accuracy (metres) in <hdop>; every other writer the real HDOP.
    metres = (gpx.creator or "").strip().lower().startswith("osmand")
    for i, trk in enumerate(gpx.tracks):
        points: list[tuple[str, GpxPoint]] = []
        for j, seg in enumerate(trk.segments):
            for k, p in enumerate(seg.points):
                where = f"trk[{i}].trkseg[{j}].trkpt[{k}]"
                if p.time is None:
                    raise EventInputError(
                        str(file), None, where,
                        "the track point has no <time> (or one that is not an ISO-8601 time): "
                        "coverwatch needs the time of every point (a track drawn on a map, "
                        "without times, cannot be replayed)")
                points.append((where, GpxPoint(_utc(p.time), p.latitude, p.longitude,
                                               *_accuracy(p, metres))))
        tracks.append(GpxTrack(trk.name, points))
    if not any(t.points for t in tracks):
        extra = " (it has routes or waypoints only)" if gpx.routes or gpx.waypoints else ""
        raise EventInputError(str(file), None, None,
                              f"the GPX file has no timed track points{extra}")
    return tracks


def gpx_records(
    path: str | os.PathLike[str], options: GpxOptions, *, default_accuracy_m: float
) -> list[tuple[str, dict[str, Any]]]:
    """Event records (with where each came from) for every track of a GPX file."""
    tracks = [t for t in read_gpx_tracks(path) if t.points]
    name = str(path)
    if options.officer is not None and len(tracks) > 1:
        raise EventInputError(name, None, None,
                              f"--officer names one officer but the file has {len(tracks)} "
                              "tracks; name each <trk> instead")
    out: list[tuple[str, dict[str, Any]]] = []
    caps = sorted(set(options.capabilities))
    for i, track in enumerate(tracks):
        officer = options.officer or (track.name or "").strip()
        if not officer:
            raise EventInputError(name, None, f"trk[{i}].name",
                                  "the track has no <name>: give the officer with --officer")
        records = []
        for where, p in track.points:
            rec: dict[str, Any] = {"t": p.t, "kind": "fix", "officer": officer,
                                   "lat": p.lat, "lon": p.lon,
                                   "accuracy_m": default_accuracy_m if p.accuracy_m is None
                                   else p.accuracy_m, "accuracy_source": p.accuracy_source}
            records.append((where, rec))
        if options.track_duty and options.alongside is None:
            first = min(p.t for _, p in track.points)
            last = max(p.t for _, p in track.points)
            out.append((f"trk[{i}] (start)", {"t": first, "kind": "duty", "officer": officer,
                                              "on": True, "capabilities": caps}))
            out.extend(records)
            out.append((f"trk[{i}] (end)", {"t": last, "kind": "duty", "officer": officer,
                                            "on": False}))
        else:
            out.extend(records)
    return out


def _accuracy_out(point: gpxpy.gpx.GPXTrackPoint, acc: float | None, source: str) -> None:
    """Write the accuracy so that reading it back gives the same value and source."""
    if acc is None or source in ("default", "none"):
        return  # not the device's (a site default; a file's unstated 0): not written
    if source == "hdop-scaled":
        point.horizontal_dilution = acc / UERE_M
        return
    node = _safe_et.fromstring(f'<cw:accuracy_m xmlns:cw="{NAMESPACE}">{acc!r}</cw:accuracy_m>')
    point.extensions.append(node)


def write_gpx(
    tracks: Iterable[tuple[str, Sequence[tuple[Any, ...]]]],
    waypoints: Iterable[GpxWaypoint] = (),
    *, creator: str = "coverwatch",
) -> str:
    """GPX 1.1 text: one track per (name, [(time, lat, lon, accuracy_m[, source])]) and the
    waypoints; the source (default ``reported``) says how the accuracy is written."""
    gpx = gpxpy.gpx.GPX()
    gpx.creator = creator
    gpx.nsmap["cw"] = NAMESPACE
    for wp in waypoints:
        gpx.waypoints.append(gpxpy.gpx.GPXWaypoint(
            wp.lat, wp.lon, time=wp.t, name=wp.name, description=wp.description or None))
    for name, points in tracks:
        trk = gpxpy.gpx.GPXTrack(name=name)
        seg = gpxpy.gpx.GPXTrackSegment()
        for t, lat, lon, acc, *source in points:
            point = gpxpy.gpx.GPXTrackPoint(lat, lon, time=t)
            _accuracy_out(point, acc, source[0] if source else "reported")
            seg.points.append(point)
        trk.segments.append(seg)
        gpx.tracks.append(trk)
    text: str = gpx.to_xml(version="1.1")
    return text
