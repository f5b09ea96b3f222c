"""The site file's ``checkpoints`` and ``tours`` sections, read with the site
loader's node checker (every problem names file, line, column and field).

Called by :mod:`coverwatch.formats._sitebase`; the schema is in docs/tours.md.
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from coverwatch.domain.site import Post
from coverwatch.domain.tours import (
    CHECKPOINT_KINDS,
    DEFAULT_CHECKPOINT_ACCURACY_M,
    Checkpoint,
    Tour,
    TourStop,
)
from coverwatch.formats._siteyaml import _child, _hint, _item, _NodeChecker

__all__ = ["CHECKPOINT_KEYS", "SCAN_WALK_KEY", "TOUR_KEYS", "read_checkpoints", "read_scan_walk",
           "read_tours"]

CHECKPOINT_KEYS = {"id": True, "at": True, "kind": True, "accuracy_m": False, "post": False,
                   "name": False}
TOUR_KEYS = {"id": True, "name": False, "every_s": True, "from": False, "ordered": False,
             "stops": True}
_STOP_KEYS = {"checkpoint": True, "within_s": True}
_DAY_S = 86_400
#: The top-level key of the walking speed at which a scan's accuracy grows.
SCAN_WALK_KEY = "scan_walk_mps"


def read_scan_walk(ck: _NodeChecker, fields: dict[str, tuple[Node, Node]]) -> dict[str, float]:
    """``scan_walk_mps``: > 0 and at most 50 m/s; absent, the default (1.5 m/s).
    Returned as the Site field to set (empty when absent or wrong)."""
    if SCAN_WALK_KEY not in fields:
        return {}
    value = ck.number(fields[SCAN_WALK_KEY][1], SCAN_WALK_KEY, above=0, maximum=50)
    return {} if value is None else {SCAN_WALK_KEY: value}


def read_checkpoints(ck: _NodeChecker, node: Node, posts: tuple[Post, ...] | None,
                     ) -> tuple[Checkpoint, ...]:
    """The ``checkpoints`` section: a list of tags."""
    out: list[Checkpoint] = []
    seen: dict[str, Node] = {}
    post_ids = [p.id for p in posts or ()]
    for i, item in enumerate(ck.sequence(node, "checkpoints") or []):
        path = _item("checkpoints", i)
        fields = ck.mapping(item, path, CHECKPOINT_KEYS)
        if fields is None:
            continue
        cp_id = ck.unique_id(fields, path, seen, "checkpoint")
        at = ck.point(fields["at"][1], _child(path, "at")) if "at" in fields else None
        kind = None
        if "kind" in fields:
            kind = ck.string(fields["kind"][1], _child(path, "kind"))
            if kind is not None and kind not in CHECKPOINT_KINDS:
                ck.problem(fields["kind"][1], _child(path, "kind"),
                           f"unknown kind {kind!r}; expected one of "
                           f"{', '.join(CHECKPOINT_KINDS)}{_hint(kind, list(CHECKPOINT_KINDS))}")
                kind = None
        accuracy = DEFAULT_CHECKPOINT_ACCURACY_M.get(kind or "", 0.0)
        if "accuracy_m" in fields:
            value = ck.number(fields["accuracy_m"][1], _child(path, "accuracy_m"), minimum=0,
                              maximum=1000)
            accuracy = accuracy if value is None else value
        post = None
        if "post" in fields:
            post = ck.ident(fields["post"][1], _child(path, "post"))
            if post is not None and posts is not None and post not in post_ids:
                ck.problem(fields["post"][1], _child(path, "post"),
                           f"unknown post {post!r}{_hint(post, post_ids)}")
                post = None
        name = ""
        if "name" in fields:
            name = ck.string(fields["name"][1], _child(path, "name")) or ""
        if cp_id is None or at is None or kind is None:
            continue
        out.append(Checkpoint(cp_id, at, kind, accuracy, post, name or cp_id))
    return tuple(out)


def read_tours(ck: _NodeChecker, node: Node, checkpoints: tuple[Checkpoint, ...],
               ) -> tuple[Tour, ...]:
    """The ``tours`` section: rounds of checkpoints with a window per stop."""
    known = [c.id for c in checkpoints]
    out: list[Tour] = []
    seen: dict[str, Node] = {}
    for i, item in enumerate(ck.sequence(node, "tours") or []):
        path = _item("tours", i)
        fields = ck.mapping(item, path, TOUR_KEYS)
        if fields is None:
            continue
        tour_id = ck.unique_id(fields, path, seen, "tour")
        every = ck.number(fields["every_s"][1], _child(path, "every_s"), minimum=60,
                          maximum=_DAY_S) if "every_s" in fields else None
        from_s = 0.0
        if "from" in fields:
            from_s = _time_of_day(ck, fields["from"][1], _child(path, "from")) or 0.0
        ordered = True
        if "ordered" in fields:
            ordered = bool(ck.boolean(fields["ordered"][1], _child(path, "ordered")))
        stops: list[TourStop] = []
        ok = True
        spath = _child(path, "stops")
        used: set[str] = set()
        for j, stop_node in enumerate(ck.sequence(fields["stops"][1], spath) or []
                                      if "stops" in fields else []):
            stop_path = _item(spath, j)
            sf = ck.mapping(stop_node, stop_path, _STOP_KEYS)
            if sf is None:
                ok = False
                continue
            cp = ck.ident(sf["checkpoint"][1], _child(stop_path, "checkpoint")) \
                if "checkpoint" in sf else None
            if cp is not None and cp not in known:
                ck.problem(sf["checkpoint"][1], _child(stop_path, "checkpoint"),
                           f"unknown checkpoint {cp!r}{_hint(cp, known)}")
                cp = None
            elif cp is not None and cp in used:
                ck.problem(sf["checkpoint"][1], _child(stop_path, "checkpoint"),
                           f"checkpoint {cp!r} is already a stop of this tour")
                cp = None
            within = ck.number(sf["within_s"][1], _child(stop_path, "within_s"), above=0,
                               maximum=_DAY_S) if "within_s" in sf else None
            if cp is None or within is None:
                ok = False
                continue
            used.add(cp)
            stops.append(TourStop(cp, within))
        if "stops" in fields and not stops and ok:
            ck.problem(fields["stops"][1], spath, "a tour needs at least one stop")
            ok = False
        if tour_id is None or every is None or not ok:
            continue
        out.append(Tour(tour_id, tuple(stops), every, from_s, ordered,
                        (ck.string(fields["name"][1], _child(path, "name")) or tour_id)
                        if "name" in fields else tour_id))
    return tuple(out)


def _time_of_day(ck: _NodeChecker, node: Node, path: str) -> float | None:
    """'HH:MM' (local time of day) as seconds after midnight."""
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        hh, sep, mm = node.value.partition(":")
        if sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 \
                and len(mm) == 2:
            return float(int(hh) * 3600 + int(mm) * 60)
    ck.problem(node, path, "expected a local time of day 'HH:MM' (quote it), e.g. '06:30'")
    return None
