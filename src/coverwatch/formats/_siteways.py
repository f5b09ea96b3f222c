"""The site file's travel sections: ``walkways`` (the paths officers walk),
``barriers`` (what they cannot cross) and ``speeds_mps`` (how fast each
capability moves), used by rules with ``reach_s``.
"""

from __future__ import annotations

import difflib

from yaml.nodes import MappingNode, Node

from coverwatch.domain.site import Barrier, Post, Walkway
from coverwatch.errors import Problem
from coverwatch.formats._sitekeys import _BARRIER_KEYS, _WALKWAY_KEYS
from coverwatch.formats._siteyaml import _child, _item, _NodeChecker

__all__ = ["_WayReader"]


class _WayReader(_NodeChecker):
    """Reads walkways, barriers and speeds, and checks reach rules have walkways."""

    def walkways(self, node: Node) -> tuple[Walkway, ...]:
        items = self.sequence(node, "walkways")
        out: list[Walkway] = []
        seen: dict[str, Node] = {}
        for index, item in enumerate(items or []):
            field_path = _item("walkways", index)
            fields = self.mapping(item, field_path, _WALKWAY_KEYS)
            if fields is None:
                continue
            walkway_id = self.unique_id(fields, field_path, seen, "walkway")
            points = None
            if "points" in fields:
                points = self.polyline(fields["points"][1], _child(field_path, "points"), 2)
            one_way = False
            if "one_way" in fields:
                one_way = bool(self.boolean(fields["one_way"][1], _child(field_path, "one_way")))
            if walkway_id is not None and points is not None:
                out.append(Walkway(walkway_id, points, one_way))
        return tuple(out)

    def barriers(self, node: Node) -> tuple[Barrier, ...]:
        items = self.sequence(node, "barriers")
        out: list[Barrier] = []
        seen: dict[str, Node] = {}
        for index, item in enumerate(items or []):
            field_path = _item("barriers", index)
            fields = self.mapping(item, field_path, _BARRIER_KEYS)
            if fields is None:
                continue
            barrier_id = self.unique_id(fields, field_path, seen, "barrier")
            points: tuple[tuple[float, float], ...] | None = None
            if ("at" in fields) == ("points" in fields):
                self.problem(item, field_path,
                             "give either 'at' (a point [x, y]) or 'points' (a line "
                             "[[x, y], ...]), not both or neither")
            elif "at" in fields:
                at = self.point(fields["at"][1], _child(field_path, "at"))
                points = None if at is None else (at,)
            else:
                points = self.polyline(fields["points"][1], _child(field_path, "points"), 2)
            if barrier_id is not None and points is not None:
                out.append(Barrier(barrier_id, points))
        return tuple(out)

    def polyline(self, node: Node, field_path: str,
                 minimum: int) -> tuple[tuple[float, float], ...] | None:
        items = self.sequence(node, field_path)
        if items is None:
            return None
        points = [self.point(item, _item(field_path, i)) for i, item in enumerate(items)]
        if any(p is None for p in points):
            return None
        line = [p for p in points if p is not None]
        if len(set(line)) < minimum:
            self.problem(node, field_path,
                         f"a line needs at least {minimum} distinct points, got {len(set(line))}")
            return None
        return tuple(line)

    def speeds(self, node: Node) -> dict[str, float]:
        if not isinstance(node, MappingNode):
            self.expected(node, "speeds_mps",
                          "a mapping of capabilities (or 'default') to speeds in m/s")
            return {}
        out: dict[str, float] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, "speeds_mps")
            if key is None:
                continue
            field_path = _child("speeds_mps", key)
            if key in out:
                self.problem(key_node, field_path, f"duplicate speed {key!r}")
                continue
            if self.ident(key_node, field_path) is None:
                continue
            if key != "default" and difflib.get_close_matches(key, ["default"], n=1):
                self.problem(key_node, field_path, f"unknown speed {key!r}; did you mean "
                                                   "'default'?")
                continue
            speed = self.number(value_node, field_path, above=0, maximum=50)
            if speed is not None:
                out[key] = speed
        return out

    def reach_without_walkways(self, node: Node, posts: tuple[Post, ...]) -> None:
        """A reach_s rule needs walkways to travel along."""
        for index, post in enumerate(posts):
            for r_index, rule in enumerate(post.rules):
                if rule.reach_s is not None:
                    path = f"posts[{index}].rules[{r_index}].reach_s"
                    line, column = self.locations.get(path, (None, None))
                    self.problems.append(Problem(
                        self.path, line, column, path,
                        "reach_s needs walkways: add a 'walkways' section to the site"))

