"""Storing history from files (``coverwatch events import``): backfill, or a
phone's track recovered later.

Each record goes through exactly the live paths' validation
(:func:`coverwatch.formats.validation.validate_records`) and into the store's
idempotent append, so importing a file twice, or a file that overlaps what
devices already sent (a fix of the same officer, time, position and reported
accuracy from any device), stores each event once. Events at or before the
server's saved live horizon are stored as *late* (history: reports and
exports count them, the live picture is not rewritten); later ones are
picked up by the live engine when the server next starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S
from coverwatch.errors import EventInputError
from coverwatch.formats.eventrecords import file_records
from coverwatch.formats.gpx import GpxOptions
from coverwatch.formats.validation import InvalidEvents, validate_records
from coverwatch.storage import Store
from coverwatch.storage.store import event_digest, event_key

__all__ = ["ImportResult", "import_events"]

_CHUNK = 20_000
_HORIZON_KEY = "live.horizon_us"  # the live server's saved horizon (server/handlers/tick.py)


@dataclass(frozen=True, slots=True)
class ImportResult:
    read: int
    stored: int
    duplicates: int
    late: int


def _without_device(key: str) -> str:
    head, _, rest = key.rpartition("|")  # kind|ident|t_us|device|digest: drop the device
    return f"{head.rpartition('|')[0]}|{rest}"


def _not_sent_by_a_device(store: Store, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, less fixes a device already sent (same officer, time, position and
    reported accuracy): a file carries no device, so the store's own key would not see
    the recovered track, or an exported one, as what the phone sent."""
    fixes = [r for r in part if r["kind"] == "fix"]
    if not fixes:
        return part
    sent = {_without_device(k) for k in store.fix_keys(
        sorted({str(r["officer"]) for r in fixes}), min(r["t_us"] for r in fixes),
        max(r["t_us"] for r in fixes) + 1)}
    if not sent:
        return part
    return [r for r in part if r["kind"] != "fix" or _without_device(
        event_key("fix", str(r["officer"]), r["t_us"], None, event_digest(r))) not in sent]


def import_events(
    store: Store, site: Site, path: str | os.PathLike[str], *, now_us: int,
    gpx: GpxOptions | None = None, max_future_s: float = 30.0,
) -> ImportResult:
    """Validate every record of the file, then store them; nothing is stored if any is bad."""
    name = os.fspath(path)
    saved = store.get_state(_HORIZON_KEY)
    horizon = int(saved) if saved is not None else None
    rows: list[dict[str, Any]] = []
    chunk: list[tuple[str, Any]] = []

    def check() -> None:
        try:
            checked = validate_records([r for _, r in chunk], site, now_us=now_us,
                                       max_future_us=round(max_future_s * US_PER_S))
        except InvalidEvents as e:
            p = e.problems[0]
            where = chunk[p.index][0]
            more = f" (and {len(e.problems) - 1} more in this part)" if len(e.problems) > 1 else ""
            raise EventInputError(name, None, f"{where}" + (f", {p.field}" if p.field else ""),
                                  p.message + more) from None
        rows.extend(checked)
        chunk.clear()

    for item in file_records(path, site, gpx):
        chunk.append(item)
        if len(chunk) >= _CHUNK:
            check()
    if chunk:
        check()
    stored = late = 0
    for lo in range(0, len(rows), _CHUNK):
        part = _not_sent_by_a_device(store, rows[lo:lo + _CHUNK])
        for r in part:
            r["source"] = "import"
            r["received_us"] = now_us
            r["late"] = horizon is not None and r["t_us"] <= horizon
        result = store.append_events(part)
        stored += result.inserted
        late += sum(1 for r in result.rows if r["late"])
    return ImportResult(len(rows), stored, len(rows) - stored, late)
