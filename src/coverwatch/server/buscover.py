"""The live cover engine as a bus evaluator (``coverwatch.bus.SiteEvaluator``).

A worker feeds it a site's stream: events through :meth:`BusCover.take`
(an event earlier than the horizon is late: stored and flagged, and a late
state event that is the newest about its officer, gate or flag is applied at
the horizon, exactly as the single-process server does), watermarks through
:meth:`BusCover.advance`, which moves the horizon and returns the cover
changes, and new rules through :meth:`BusCover.control` (published with
``EventLog.publish_control(site, "site:<hash>:<t>", {"site_source": text,
"effective_us": t})``): the rules switch when the horizon reaches ``t`` (at once
if it is already past), so every owner switches at the same instant and the
stored version's time is exactly where evaluation switched.
The stream sequence is the event's arrival order (``id`` for ties).

The checkpoint state is the pickled :class:`LiveCover` (with the switches still
to come), signed with the
deployment's secret: a checkpoint is only ever unpickled if this deployment
wrote it. This module implements the interface structurally and imports
nothing from ``bus``, so ``bus`` may later import ``server`` without a cycle.
"""

from __future__ import annotations

import copyreg
import hashlib
import hmac
import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S
from coverwatch.engine import CoverChange
from coverwatch.errors import CoverwatchError
from coverwatch.formats.sitefile import load_site_text
from coverwatch.server.latewatch import WINDOW_S
from coverwatch.server.live import LiveCover
from coverwatch.server.watermark import DeviceClock

__all__ = ["KEEP_LAPSES_US", "BusCover", "LateEvents", "StateRejected", "pickle_state"]

_FIRST = -(2**62)  # before the first watermark nothing is late
_T_US = itemgetter("t_us")
_KIND = itemgetter("kind")
KEEP_LAPSES_US = 3600 * 1_000_000  # closed lapses a checkpoint keeps (event time)


def read_only(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """Rebuilds a site's read-only mapping when a checkpoint is loaded."""
    return MappingProxyType(d)


def _proxy(m: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return read_only, (dict(m),)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        # Sites hold read-only mappings; pickle them without a global copyreg change.
        self.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _proxy}


def pickle_state(obj: object) -> bytes:
    """``obj`` pickled as a checkpoint is (sites' read-only mappings included)."""
    buf = io.BytesIO()
    _Pickler(buf).dump(obj)
    return buf.getvalue()


class StateRejected(CoverwatchError):
    """A checkpoint whose signature does not match this deployment's secret."""


class _Message(Protocol):
    # Read-only, as in the bus's frozen BusMessage.
    @property
    def seq(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LateEvents:
    """Keys of events that came after the horizon had passed them (to flag in the store),
    and (key, horizon) of the late state events applied live at that horizon."""

    keys: tuple[str, ...]
    applied: tuple[tuple[str, int], ...] = ()


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    """Each row's ``name`` (None where it has none)."""
    try:
        return list(map(dict.get, rows, repeat(name)))  # type: ignore[arg-type]
    except TypeError:  # rows that are mappings but not dicts
        return [r.get(name) for r in rows]


class BusCover:
    """A site's :class:`LiveCover`, driven by its stream; see the module docstring."""

    # advance(a) then advance(b) is advance(max(a, b)): the engine is exact in event time
    # (replay advances in any steps), so a worker may skip all but the last of a run of
    # watermarks.
    coalesce_watermarks = True

    def __init__(self, site: Site, *, secret: bytes, lateness_us: int = 0,
                 max_lateness_us: int = 0, state: bytes | None = None) -> None:
        self._secret = secret
        # ``site`` is the start's rules only: a checkpoint holds the rules in force at
        # its point, and changes come through the stream (control), so that every
        # owner switches at the same point.
        # Rule changes not yet in force: (effective_us, site file text), in time order.
        self.pending: list[tuple[int, str]] = []
        # The devices' newest times: the owner's watermark is the single process's.
        self.devices = DeviceClock(lateness_us, max_lateness_us)
        if state is None:
            self.live = LiveCover(site, lateness_us=lateness_us, start_horizon=_FIRST)
        else:
            self.live, self.pending, devices = self._restore(state)
            if devices is not None:
                self.devices = devices

    def watermark(self, now_us: int) -> int:
        """The horizon to publish at ``now_us``: the device watermark (server/watermark.py)."""
        return self.devices.horizon(now_us)

    def take(self, events: Sequence[_Message]) -> Sequence[Any]:
        return self.take_columns([m.seq for m in events], [m.key for m in events],
                                 [m.data for m in events])

    def take_columns(self, seqs: Sequence[int], keys: Sequence[str | None],
                     rows: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        """:meth:`take` of events given as columns (stream sequence, key, row), as a worker
        hands a run of chunks over: nothing made per event but the engine's columns."""
        if not rows:
            return []
        # Usually nothing is late (a whole message on time) and every event is a fix:
        # then no row needs the late plan, whose every row would be on time and not
        # applied, and the fixes go straight into the engine's columns.
        h = self.live.horizon
        ts = list(map(int, map(_T_US, rows)))
        late_any = min(ts) < h
        kinds = list(map(_KIND, rows))
        fixes_only = kinds.count("fix") == len(kinds)
        self._note_devices(ts, kinds, rows, fixes_only)
        if not late_any and fixes_only:
            self.live.add_fix_rows(seqs, rows)
            return []
        stored = [{**r, "id": s} for s, r in zip(seqs, rows, strict=True)]
        if not late_any:
            self.live.add(stored)
            return []
        for r in stored:
            r["late"] = int(r["t_us"]) < h
        self.live.plan_late(stored)  # the horizon is the stream's, so every owner agrees
        self.live.add(stored)
        late = tuple(k or "" for k, r in zip(keys, stored, strict=True) if r["late"])
        applied = tuple((k or "", int(r["applied_us"]))
                        for k, r in zip(keys, stored, strict=True)
                        if r["applied_us"] is not None)
        return [LateEvents(late, applied)]

    def _note_devices(self, ts: list[int], kinds: list[Any],
                      rows: Sequence[Mapping[str, Any]], fixes_only: bool) -> None:
        """Each device's newest fix time and upload of these rows into the device clock:
        once per device (the clock keeps the greatest of each, so the order is moot)."""
        devices = _column(rows, "device")
        if not any(devices):
            return
        received = _column(rows, "received_us")
        if fixes_only and all(devices) and set(map(type, received)) == {int} \
                and set(map(type, devices)) == {str}:
            index = {d: i for i, d in enumerate(dict.fromkeys(devices))}
            at = np.fromiter(map(index.__getitem__, devices), np.intp, len(devices))
            newest = np.full(len(index), _FIRST, np.int64)
            upload = np.full(len(index), _FIRST, np.int64)
            np.maximum.at(newest, at, np.array(ts, np.int64))
            np.maximum.at(upload, at, np.array(received, np.int64))
            for d, t, r in zip(index, newest.tolist(), upload.tolist(), strict=True):
                self.devices.note(d, t, r)
            return
        note = self.devices.note
        for d, kind, t, r in zip(devices, kinds, ts, received, strict=True):
            if kind == "fix" and d and isinstance(r, int):
                note(str(d), t, r)

    def advance(self, horizon_us: int) -> Sequence[CoverChange]:
        out: list[CoverChange] = []
        while self.pending and self.pending[0][0] <= horizon_us:
            at, source = self.pending.pop(0)
            out += self.live.advance_to(at)
            out += self.live.switch_site(self._site(source))
        out += self.live.advance_to(horizon_us)
        return out

    def control(self, data: Mapping[str, Any]) -> Sequence[CoverChange]:
        """``{"site_source": text, "effective_us": t}``: the site's new rules, in force from
        ``t`` (from the horizon on if ``t`` is missing or already past)."""
        source = data.get("site_source")
        if not isinstance(source, str):
            return []
        at = data.get("effective_us")
        if isinstance(at, int) and at > self.live.horizon:
            self._site(source)  # refuse a bad file now, not when it falls due
            self.pending = sorted([*self.pending, (at, source)], key=lambda p: p[0])
            return []
        return self.live.switch_site(self._site(source))

    def _site(self, source: str) -> Site:
        return load_site_text(source, f"<site {self.live.site.id} from the bus>")

    def snapshot(self) -> bytes:
        self._forget_old_lapses()
        # Late arrivals are shown for the last WINDOW_S; keep twice that.
        self.live.late.forget_before(self.live.horizon - 2 * WINDOW_S * US_PER_S)
        buf = io.BytesIO()
        _Pickler(buf).dump((self.live, self.pending, self.devices))
        body = buf.getvalue()
        return hmac.new(self._secret, body, hashlib.sha256).digest() + body

    def _forget_old_lapses(self) -> None:
        # Closed lapses pile up in the engine for ever; on the bus they have left as
        # outputs (alerts in PostgreSQL) and history is recomputed there, so a
        # checkpoint keeps only the last KEEP_LAPSES_US of them and stays small.
        engine = self.live._engine
        if engine is None or not engine.lapses:
            return
        cutoff = engine.horizon - KEEP_LAPSES_US
        engine.lapses = [lp for lp in engine.lapses if lp.end is None or lp.end >= cutoff]

    def _restore(self, state: bytes) -> tuple[LiveCover, list[tuple[int, str]],
                                              DeviceClock | None]:
        mac, body = state[:32], state[32:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, body, hashlib.sha256).digest()):
            raise StateRejected("checkpoint signature does not match: not written here")
        loaded = pickle.loads(body)  # authenticated above
        parts = loaded if isinstance(loaded, tuple) else (loaded,)  # older: fewer parts
        live, pending, devices = (*parts, [], None)[:3]
        if not isinstance(live, LiveCover):
            raise StateRejected("checkpoint holds no live cover state")
        return live, list(pending), devices if isinstance(devices, DeviceClock) else None
