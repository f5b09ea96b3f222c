"""The plan-file loader: reads a roster and patrol plan (YAML) for a site and
validates it into a :class:`coverwatch.planning.simulate.Plan`.

An adapter, in the style of the site-file loader: the YAML is composed into
nodes so every problem carries file, line, column and field path, unknown keys
get a did-you-mean, and the whole file is checked before anything is built.
The schema is documented in docs/planning.md.
"""

from __future__ import annotations

import os
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coverwatch.domain.site import Site
from coverwatch.domain.time import parse_time, seconds_to_us
from coverwatch.errors import Problem, SiteFileError

# The site loader's node checker does the YAML work; plans share its wording.
from coverwatch.formats._siteyaml import _INT, _STR, _child, _compose, _hint, _item, _NodeChecker
from coverwatch.formats.yamldepth import paused_gc
from coverwatch.planning.simulate import OfficerPlan, Patrol, Plan

__all__ = ["PlanFileError", "load_plan", "load_plan_text"]

_PLAN_KEYS = {
    "plan": True,
    "site": False,
    "name": False,
    "start": True,
    "end": False,
    "hours": False,
    "flags": False,
    "gates_open": False,
    "accuracy_m": False,
    "seed": False,
    "officers": True,
    # The patrol game's sections, read by coverwatch.formats.patrolfile.
    "targets": False,
    "randomise": False,
    "schedule": False,  # a sampled day's plan for the orders (coverwatch orders --patrol-plan)
}
_OFFICER_KEYS = {
    "id": True,
    "capabilities": False,
    "shift": False,
    "post": False,
    "at": False,
    "patrol": False,
}
_SHIFT_KEYS = {"from": False, "until": False}
_PATROL_KEYS = {
    "route": True,
    "speed_mps": True,
    "dwell_s": False,
    "loop": False,
    "start_offset_s": False,
    "along_walkways": False,
}


class PlanFileError(SiteFileError):
    """A plan file is invalid; ``problems`` lists every problem found."""


def load_plan(path: str | os.PathLike[str], site: Site) -> Plan:
    """Load and validate a plan file against ``site``. Raises :class:`PlanFileError`."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise PlanFileError([Problem(name, None, None, None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanFileError([Problem(name, None, None, None, f"cannot read the file: {e}")]) \
            from None
    return load_plan_text(text, site, name)


def load_plan_text(text: str, site: Site, path: str = "<string>") -> Plan:
    """Like :func:`load_plan`, from YAML text."""
    with paused_gc():
        return _load_plan_text(text, site, path)


def _load_plan_text(text: str, site: Site, path: str) -> Plan:
    try:
        root = _compose(path, text)
    except SiteFileError as e:
        raise PlanFileError(e.problems) from None
    if root is None or (isinstance(root, ScalarNode) and not root.value):
        raise PlanFileError([Problem(path, None, None, None,
                                     "the file is empty; a plan needs 'plan', 'start' and "
                                     "'officers'")])
    checker = _PlanChecker(path, text, site)
    plan = checker.plan(root)
    checker.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    if checker.problems or plan is None:
        raise PlanFileError(checker.problems or [
            Problem(path, None, None, None, "invalid plan file")])
    return plan


class _PlanChecker(_NodeChecker):
    def __init__(self, path: str, text: str, site: Site) -> None:
        super().__init__(path, text)
        self.site_model = site

    def time(self, node: Node, field_path: str) -> int | None:
        if not isinstance(node, ScalarNode):
            self.expected(node, field_path, "a time (ISO-8601 with an offset)")
            return None
        value: Any = node.value
        try:
            if node.tag == _INT:
                value = int(node.value)
            return parse_time(value)
        except (ValueError, OverflowError) as e:
            self.problem(node, field_path, str(e))
            return None

    def post_ref(self, node: Node, field_path: str) -> str | None:
        post_id = self.ident(node, field_path)
        if post_id is None:
            return None
        ids = [p.id for p in self.site_model.posts]
        if post_id not in ids:
            self.problem(node, field_path, f"unknown post {post_id!r}{_hint(post_id, ids)}")
            return None
        return post_id

    def place(self, node: Node, field_path: str) -> tuple[float, float] | None:
        """A waypoint: [x, y] or the id of a point post."""
        if isinstance(node, ScalarNode) and node.tag == _STR:
            post_id = self.post_ref(node, field_path)
            if post_id is None:
                return None
            post = self.site_model.post(post_id)
            if post.at is None:
                self.problem(node, field_path,
                             f"post {post_id!r} is an area; give a point [x, y] instead")
                return None
            return post.at
        return self.point(node, field_path)

    def plan(self, root: Node) -> Plan | None:
        fields = self.mapping(root, "", _PLAN_KEYS)
        if fields is None:
            return None
        plan_id = self.ident(fields["plan"][1], "plan") if "plan" in fields else None
        if "site" in fields:
            site_id = self.ident(fields["site"][1], "site")
            if site_id is not None and site_id != self.site_model.id:
                self.problem(fields["site"][1], "site",
                             f"this plan is for site {site_id!r}, not {self.site_model.id!r}")
        start = self.time(fields["start"][1], "start") if "start" in fields else None
        end: int | None = None
        if "end" in fields and "hours" in fields:
            self.problem(fields["hours"][0], "hours", "give either 'end' or 'hours', not both")
        elif "end" in fields:
            end = self.time(fields["end"][1], "end")
            if end is not None and start is not None and end <= start:
                self.problem(fields["end"][1], "end", "must be after 'start'")
                end = None
        elif "hours" in fields:
            hours = self.number(fields["hours"][1], "hours", above=0, maximum=24 * 31)
            if hours is not None and start is not None:
                end = start + seconds_to_us(hours * 3600)
        else:
            self.problem(root, "end", "missing 'end' (a time) or 'hours' (the shift length)")
        flags: dict[str, bool] = {}
        if "flags" in fields:
            node = fields["flags"][1]
            if not isinstance(node, MappingNode):
                self.expected(node, "flags", "a mapping of flag names to true or false")
            else:
                for key_node, value_node in node.value:
                    key = self.key(key_node, "flags")
                    if key is None:
                        continue
                    if key not in self.site_model.flags:
                        hint = _hint(key, list(self.site_model.flags))
                        self.problem(key_node, _child("flags", key),
                                     f"unknown flag {key!r}{hint}")
                        continue
                    value = self.boolean(value_node, _child("flags", key))
                    if value is not None:
                        flags[key] = value
        gates: list[str] = []
        if "gates_open" in fields:
            for i, item in enumerate(self.sequence(fields["gates_open"][1], "gates_open") or []):
                gate = self.post_ref(item, _item("gates_open", i))
                if gate is not None and gate not in self.site_model.gates:
                    self.problem(item, _item("gates_open", i), f"post {gate!r} has no gate")
                elif gate is not None:
                    gates.append(gate)
        accuracy = 0.0
        if "accuracy_m" in fields:
            accuracy = self.number(fields["accuracy_m"][1], "accuracy_m", minimum=0) or 0.0
        seed = 0
        if "seed" in fields:
            seed = self.integer(fields["seed"][1], "seed", minimum=0) or 0
        officers: list[OfficerPlan] = []
        items = self.sequence(fields["officers"][1], "officers") if "officers" in fields else []
        seen: dict[str, Node] = {}
        for i, item in enumerate(items or []):
            if start is None or end is None:
                break
            officer = self.officer(item, _item("officers", i), start, end, seen)
            if officer is not None:
                officers.append(officer)
        if items is not None and not items and "officers" in fields:
            self.problem(fields["officers"][1], "officers", "a plan needs at least one officer")
        if self.problems or plan_id is None or start is None or end is None:
            return None
        return Plan(plan_id, start, end, tuple(officers), flags, tuple(gates), accuracy, seed)

    def officer(self, node: Node, field_path: str, start: int, end: int,
                seen: dict[str, Node]) -> OfficerPlan | None:
        fields = self.mapping(node, field_path, _OFFICER_KEYS)
        if fields is None:
            return None
        officer_id = self.unique_id(fields, field_path, seen, "officer")
        caps: set[str] = set()
        if "capabilities" in fields:
            cpath = _child(field_path, "capabilities")
            for i, item in enumerate(self.sequence(fields["capabilities"][1], cpath) or []):
                cap = self.ident(item, _item(cpath, i))
                if cap is not None:
                    caps.add(cap)
        shift = (start, end + 1)  # until is exclusive; default: to the end, inclusive
        if "shift" in fields:
            spath = _child(field_path, "shift")
            sf = self.mapping(fields["shift"][1], spath, _SHIFT_KEYS)
            if sf is not None:
                on = self.time(sf["from"][1], _child(spath, "from")) if "from" in sf else start
                off = self.time(sf["until"][1], _child(spath, "until")) if "until" in sf \
                    else end + 1
                if on is not None and off is not None:
                    if off <= on:
                        self.problem(fields["shift"][1], spath, "'until' must be after 'from'")
                    shift = (max(on, start), min(off, end + 1))
        post = self.post_ref(fields["post"][1], _child(field_path, "post")) \
            if "post" in fields else None
        hold: tuple[float, float] | None = None
        if "at" in fields:
            hold = self.point(fields["at"][1], _child(field_path, "at"))
        elif post is not None:
            hold = self.place(fields["post"][1], _child(field_path, "post"))
        patrol: Patrol | None = None
        if "patrol" in fields:
            if "at" in fields or "post" in fields:
                self.problem(fields["patrol"][0], _child(field_path, "patrol"),
                             "an officer either holds a post ('post'/'at') or patrols, not both")
                return None
            patrol = self.patrol(fields["patrol"][1], _child(field_path, "patrol"))
            if patrol is None:
                return None
        elif hold is None:
            if "post" not in fields and "at" not in fields:
                self.problem(node, field_path,
                             "missing 'post' (a post id), 'at' ([x, y]) or 'patrol'")
            return None
        if officer_id is None:
            return None
        return OfficerPlan(officer_id, frozenset(caps), shift, hold, patrol, post)

    def patrol(self, node: Node, field_path: str) -> Patrol | None:
        fields = self.mapping(node, field_path, _PATROL_KEYS)
        if fields is None:
            return None
        rpath = _child(field_path, "route")
        route: list[tuple[float, float]] = []
        ok = True
        if "route" in fields:
            items = self.sequence(fields["route"][1], rpath) or []
            for i, item in enumerate(items):
                place = self.place(item, _item(rpath, i))
                ok = ok and place is not None
                if place is not None:
                    route.append(place)
            if ok and len(set(route)) < 2:
                self.problem(fields["route"][1], rpath,
                             "a route needs at least 2 different waypoints")
                ok = False
        speed = self.number(fields["speed_mps"][1], _child(field_path, "speed_mps"), above=0,
                            maximum=15) if "speed_mps" in fields else None
        dwell: tuple[float, ...] = (0.0,)
        if "dwell_s" in fields:
            dnode = fields["dwell_s"][1]
            dpath = _child(field_path, "dwell_s")
            if isinstance(dnode, SequenceNode):
                values = [self.number(v, _item(dpath, i), minimum=0)
                          for i, v in enumerate(dnode.value)]
                if any(v is None for v in values) or not values:
                    ok = False
                    if not values:
                        self.problem(dnode, dpath, "give at least one dwell time")
                else:
                    dwell = tuple(float(v or 0.0) for v in values)
                    if len(dwell) != len(route) and route:
                        self.problem(dnode, dpath, f"give one dwell time, or one per waypoint "
                                                   f"({len(route)}), got {len(dwell)}")
                        ok = False
            else:
                value = self.number(dnode, dpath, minimum=0)
                ok = ok and value is not None
                dwell = (value or 0.0,)
        loop = True
        if "loop" in fields:
            loop = bool(self.boolean(fields["loop"][1], _child(field_path, "loop")))
        offset: float | None = 0.0
        if "start_offset_s" in fields:
            onode = fields["start_offset_s"][1]
            opath = _child(field_path, "start_offset_s")
            if isinstance(onode, ScalarNode) and onode.tag == _STR and onode.value == "random":
                offset = None
            elif isinstance(onode, ScalarNode) and onode.tag == _STR:
                self.problem(onode, opath, f"expected seconds or 'random', got {onode.value!r}")
                ok = False
            else:
                offset = self.number(onode, opath, minimum=0)
                ok = ok and offset is not None
        along = bool(self.site_model.walkways)
        if "along_walkways" in fields:
            apath = _child(field_path, "along_walkways")
            along = bool(self.boolean(fields["along_walkways"][1], apath))
            if along and not self.site_model.walkways:
                self.problem(fields["along_walkways"][1], apath, "the site has no walkways")
                ok = False
        if not ok or speed is None or len(route) < 2:
            return None
        return Patrol(tuple(route), speed, dwell, loop, offset, along)
