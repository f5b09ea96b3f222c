"""The patrol game's sections of a plan file (``targets`` and ``randomise``),
read with the plan loader's checker, and a sampled patrol day written back as a
plan file that ``coverwatch plan check`` reads.

The schema is documented in docs/planning.md ("Randomised patrols").
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time
from coverwatch.errors import Problem
from coverwatch.formats._siteyaml import _STR, _child, _compose, _hint, _item
from coverwatch.formats.planfile import PlanFileError, _PlanChecker
from coverwatch.planning.patrolgame import GameSpec, PatrolDay, Target
from coverwatch.planning.simulate import Plan

__all__ = ["dump_day", "load_game", "load_game_text", "patrol_section", "schedule_lines"]

_RANDOMISE_KEYS = {"slot_s": False, "attack_s": False, "officers": False}
_TARGET_KEYS = {"id": True, "at": True, "value": True, "penalty": False, "radius_m": False}


def load_game(path: str | os.PathLike[str], site: Site, plan: Plan) -> GameSpec:
    """Read the ``targets`` and ``randomise`` sections of the plan file at ``path``
    (already loaded as ``plan``). Raises :class:`PlanFileError`."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlanFileError([Problem(name, None, None, None, f"cannot read the file: {e}")]) \
            from None
    return load_game_text(text, site, plan, name)


def load_game_text(text: str, site: Site, plan: Plan, path: str = "<string>") -> GameSpec:
    """Like :func:`load_game`, from YAML text."""
    root = _compose(path, text)
    checker = _GameChecker(path, text, site)
    spec = checker.game(root, plan) if isinstance(root, MappingNode) else None
    if checker.problems or spec is None:
        raise PlanFileError(checker.problems or [
            Problem(path, None, None, "targets",
                    "the plan has no 'targets': list the patrol areas and their values "
                    "to randomise patrols")])
    return spec


class _GameChecker(_PlanChecker):
    def game(self, root: MappingNode, plan: Plan) -> GameSpec | None:
        top: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in root.value:
            if isinstance(key_node, ScalarNode) and key_node.value in ("targets", "randomise"):
                top[str(key_node.value)] = (key_node, value_node)
        if "targets" not in top:
            return None
        targets: list[Target] = []
        seen: dict[str, Node] = {}
        items = self.sequence(top["targets"][1], "targets") or []
        for i, item in enumerate(items):
            target = self.target(item, _item("targets", i), seen)
            if target is not None:
                targets.append(target)
        if not items:
            self.problem(top["targets"][1], "targets", "give at least one target")
        slot_s, attack_s = 600.0, 180.0
        officers: tuple[str, ...] | None = None
        if "randomise" in top:
            fields = self.mapping(top["randomise"][1], "randomise", _RANDOMISE_KEYS) or {}
            if "slot_s" in fields:
                slot_s = self.number(fields["slot_s"][1], "randomise.slot_s", minimum=30,
                                     maximum=86_400) or slot_s
            if "attack_s" in fields:
                attack_s = self.number(fields["attack_s"][1], "randomise.attack_s",
                                       minimum=1, maximum=86_400) or attack_s
            if "officers" in fields:
                known = [o.id for o in plan.officers]
                names = []
                opath = "randomise.officers"
                for j, node in enumerate(self.sequence(fields["officers"][1], opath) or []):
                    officer = self.ident(node, _item(opath, j))
                    if officer is not None and officer not in known:
                        self.problem(node, _item(opath, j),
                                     f"unknown officer {officer!r}{_hint(officer, known)}")
                    elif officer is not None:
                        names.append(officer)
                officers = tuple(names)
        if self.problems:
            return None
        return GameSpec(tuple(targets), slot_s, attack_s, officers)

    def target(self, node: Node, field_path: str, seen: dict[str, Node]) -> Target | None:
        fields = self.mapping(node, field_path, _TARGET_KEYS)
        if fields is None:
            return None
        target_id = self.unique_id(fields, field_path, seen, "target")
        at = None
        if "at" in fields:
            at_node = fields["at"][1]
            if isinstance(at_node, ScalarNode) and at_node.tag == _STR:
                at = self.place(at_node, _child(field_path, "at"))
            else:
                at = self.point(at_node, _child(field_path, "at"))
        value = self.number(fields["value"][1], _child(field_path, "value"), above=0) \
            if "value" in fields else None
        penalty = 0.0
        if "penalty" in fields:
            penalty = self.number(fields["penalty"][1], _child(field_path, "penalty"),
                                  minimum=0) or 0.0
        radius = 20.0
        if "radius_m" in fields:
            radius = self.number(fields["radius_m"][1], _child(field_path, "radius_m"),
                                 above=0, maximum=10_000) or radius
        if target_id is None or at is None or value is None:
            return None
        return Target(target_id, at, value, penalty, radius)


def dump_day(day: PatrolDay, site: Site, source: Plan, seed: int) -> str:
    """The sampled day as a plan file (YAML) for `coverwatch plan check`."""
    plan = day.plan
    data: dict[str, Any] = {
        "plan": plan.id,
        "site": site.id,
        "start": format_time(plan.start),
        "end": format_time(plan.end),
    }
    if plan.flags:
        data["flags"] = dict(plan.flags)
    if plan.gates_open:
        data["gates_open"] = list(plan.gates_open)
    if plan.accuracy_m:
        data["accuracy_m"] = plan.accuracy_m
    data["seed"] = plan.seed
    officers = []
    for o in plan.officers:
        entry: dict[str, Any] = {"id": o.id}
        if o.capabilities:
            entry["capabilities"] = sorted(o.capabilities)
        shift: dict[str, str] = {}
        if o.shift[0] != plan.start:
            shift["from"] = format_time(o.shift[0])
        if o.shift[1] != plan.end + 1:
            shift["until"] = format_time(o.shift[1])
        if shift:
            entry["shift"] = shift
        if o.patrol is not None and o.hold is None:
            p = o.patrol
            entry["patrol"] = {
                "route": [[_num(x), _num(y)] for x, y in p.route],
                "speed_mps": p.speed_mps,
                "dwell_s": [_num(d) for d in p.dwell_s],
                "loop": p.loop,
                "start_offset_s": _num(p.start_offset_s or 0.0),
                "along_walkways": p.along_walkways,
            }
        else:
            if o.post is not None:
                entry["post"] = o.post
            if o.hold is not None:
                entry["at"] = [_num(o.hold[0]), _num(o.hold[1])]
        officers.append(entry)
    data["officers"] = officers
    data["schedule"] = {"slot_s": _num(day.slot_s),
                        "officers": {o: list(v) for o, v in day.slots.items()}}
    lines = [f"# Randomised patrol day sampled by `coverwatch plan randomise` (seed {seed})",
             f"# from plan {source.id}. Slots of {day.slot_s:g} s; free officers' targets:"]
    for officer, visits in day.slots.items():
        lines.append(f"#   {officer}: {' '.join(visits)}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False,
                                                    default_flow_style=None, width=100)


def _num(value: float) -> float | int:
    rounded = round(float(value), 3)
    return int(rounded) if rounded == int(rounded) else rounded


def schedule_lines(path: str | os.PathLike[str]) -> list[tuple[str, str, str]]:
    """(from, until, officer: target) rows of the ``schedule`` in a day plan written by
    :func:`dump_day`, in UTC. Raises :class:`PlanFileError`."""
    from coverwatch.domain.time import US_PER_S, parse_time

    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as f:
            data = yaml.safe_load(f)
        sched = data["schedule"]
        start = parse_time(data["start"])
        slot = float(sched["slot_s"])
        officers = {str(k): [str(t) for t in v] for k, v in sched["officers"].items()}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError,
            AttributeError) as e:
        raise PlanFileError([Problem(name, None, None, "schedule",
                                     f"not a day plan written by `coverwatch plan randomise "
                                     f"--out` ({type(e).__name__}: {e})")]) from None
    rows = []
    n = max((len(v) for v in officers.values()), default=0)
    for s in range(n):
        a = format_time(start + round(s * slot * US_PER_S))
        b = format_time(start + round((s + 1) * slot * US_PER_S))
        who = ", ".join(f"{o}: {v[s]}" for o, v in officers.items() if s < len(v))
        rows.append((a, b, who))
    return rows


def patrol_section(orders: str, path: str | os.PathLike[str], *, html: bool) -> str:
    """The orders text with the plan of the day appended (Markdown) or inserted
    before the end of the page (HTML): who goes where when."""
    import html as _html

    rows = schedule_lines(path)
    title = "Patrol plan of the day (randomised: do not share it before the shift)"
    if not html:
        lines = ["", f"## {title}", "", "| From | Until | Who goes where |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {w} |" for a, b, w in rows]
        return orders.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    esc = _html.escape
    body = "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(w)}</td></tr>"
                   for a, b, w in rows)
    block = (f'<section class="post patrol-plan"><h2>{esc(title)}</h2><table>'
             f"<thead><tr><th>From</th><th>Until</th><th>Who goes where</th></tr></thead>"
             f"<tbody>{body}</tbody></table></section>")
    at = orders.rfind("</main>")
    return orders[:at] + block + orders[at:] if at >= 0 else orders + block
