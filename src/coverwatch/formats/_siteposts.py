"""The site file's posts: each entry under ``posts``, with its place (a point
``at`` or a polygon ``area``), its orders and its rules, read into a
:class:`coverwatch.domain.site.Post`.
"""

from __future__ import annotations

import re

from yaml.nodes import Node

from coverwatch.domain.site import Post, Rule
from coverwatch.formats._sitekeys import _ELSEWHERE_POST, _POST_KEYS
from coverwatch.formats._siterules import _RuleReader
from coverwatch.formats._siteyaml import _child, _item

__all__ = ["_PostReader"]


class _PostReader(_RuleReader):
    """Reads the ``posts`` list: ids unique across the site, rules unique per post."""

    def posts(self, node: Node, flags: dict[str, bool]) -> tuple[Post, ...] | None:
        items = self.sequence(node, "posts")
        if items is None:
            return None
        if not items:
            self.problem(node, "posts", "a site needs at least one post")
            return None
        posts: list[Post] = []
        seen: dict[str, Node] = {}
        for index, item in enumerate(items):
            post = self.post(item, _item("posts", index), flags, seen)
            if post is not None:
                posts.append(post)
        return tuple(posts) if len(posts) == len(items) else None

    def post(
        self, node: Node, field_path: str, flags: dict[str, bool], seen: dict[str, Node]
    ) -> Post | None:
        fields = self.mapping(node, field_path, _POST_KEYS, _ELSEWHERE_POST)
        if fields is None:
            return None
        post_id: str | None = None
        if "id" in fields:
            id_node = fields["id"][1]
            post_id = self.ident(id_node, _child(field_path, "id"))
            if post_id is not None:
                if post_id in seen:
                    self.problem(id_node, _child(field_path, "id"),
                                 f"duplicate post id {post_id!r} (first used on "
                                 f"{self.where(seen[post_id])})")
                    post_id = None
                else:
                    seen[post_id] = id_node
        name = post_id
        if "name" in fields:
            name = self.string(fields["name"][1], _child(field_path, "name"), empty_ok=False)
        gate = False
        if "gate" in fields:
            gate = bool(self.boolean(fields["gate"][1], _child(field_path, "gate")))
        orders = ""
        if "orders" in fields:
            orders = self.string(fields["orders"][1], _child(field_path, "orders")) or ""
        at: tuple[float, float] | None = None
        area: tuple[tuple[float, float], ...] | None = None
        place_ok = True
        if "at" in fields and "area" in fields:
            self.problem(fields["area"][0], _child(field_path, "area"),
                         "give either 'at' (a point) or 'area' (a polygon), not both")
            place_ok = False
        elif "at" in fields:
            at = self.point(fields["at"][1], _child(field_path, "at"))
            place_ok = at is not None
        elif "area" in fields:
            area = self.area(fields["area"][1], _child(field_path, "area"))
            place_ok = area is not None
        else:
            self.problem(node, field_path,
                         "missing 'at' (a point [x, y]) or 'area' (a polygon [[x, y], ...])")
            place_ok = False
        rules: list[Rule] = []
        rules_ok = True
        if "rules" in fields:
            rules_path = _child(field_path, "rules")
            items = self.sequence(fields["rules"][1], rules_path)
            rules_ok = items is not None
            rule_seen: dict[str, Node] = {}
            for index, item in enumerate(items or []):
                rule = self.rule(item, _item(rules_path, index), flags, gate, rule_seen,
                                 "area" not in fields)
                if rule is None:
                    rules_ok = False
                else:
                    rules.append(rule)
        if post_id is None or name is None or not place_ok or not rules_ok:
            return None
        try:
            return Post(id=post_id, name=name, rules=tuple(rules), at=at, area=area,
                        gate=gate, orders=orders)
        except ValueError as e:
            self.problem(node, field_path, str(e))
            return None

    def area(self, node: Node, field_path: str) -> tuple[tuple[float, float], ...] | None:
        items = self.sequence(node, field_path)
        if items is None:
            return None
        points = [self.point(item, _item(field_path, i)) for i, item in enumerate(items)]
        if any(p is None for p in points):
            return None
        ring = [p for p in points if p is not None]
        # A ring written closed (last point repeats the first) means the same polygon.
        if len(ring) > 1 and ring[0] == ring[-1]:
            ring.pop()
        if len(ring) < 3:
            self.problem(node, field_path,
                         f"a polygon needs at least 3 distinct corners, got {len(ring)}")
            return None
        reason = _polygon_problem(ring)
        if reason is not None:
            self.problem(node, field_path, f"not a valid polygon: {reason}")
            return None
        return tuple(ring)


def _polygon_problem(ring: list[tuple[float, float]]) -> str | None:
    """Why a ring is not a simple polygon (shapely's words), or None if it is."""
    # Imported here: shapely is heavy and only polygons need it.
    from shapely.geometry import Polygon
    from shapely.validation import explain_validity

    corners = list(dict.fromkeys(ring))
    if len(corners) < 3:
        return f"it has only {len(corners)} distinct corner(s)"
    (x0, y0), (x1, y1) = corners[0], corners[1]
    if all((x1 - x0) * (y - y0) == (y1 - y0) * (x - x0) for x, y in corners[2:]):
        return "its corners are all in one line, so it has no area"
    polygon = Polygon(ring)
    if polygon.is_valid:
        return None
    reason = str(explain_validity(polygon))
    # "Self-intersection[3 1]" -> "self-intersection at (3, 1)"
    match = re.fullmatch(r"(.*?)\[(\S+) (\S+)\]", reason)
    if match:
        return f"{match.group(1).lower()} at ({float(match.group(2)):g}, {float(match.group(3)):g})"
    return reason
