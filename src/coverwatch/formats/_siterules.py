"""The site file's rules: each entry under a post's ``rules``, read into a
:class:`coverwatch.domain.site.Rule` (who is needed, how near, for how long,
and when the rule applies).
"""

from __future__ import annotations

import math

from yaml.nodes import Node

from coverwatch.domain.site import Rule
from coverwatch.formats._sitekeys import _ELSEWHERE_RULE, _RULE_KEYS
from coverwatch.formats._siteyaml import _child, _hint, _NodeChecker

__all__ = ["_RuleReader"]


class _RuleReader(_NodeChecker):
    """Reads one rule of a post."""

    def rule(
        self,
        node: Node,
        field_path: str,
        flags: dict[str, bool],
        gate: bool,
        seen: dict[str, Node],
        at_point: bool = True,
    ) -> Rule | None:
        """The rule at ``field_path``. ``flags`` are the site's, ``gate`` says the post
        is a gate, ``seen`` holds the post's rule ids so far, ``at_point`` says the
        post is a point (``reach_s`` needs one)."""
        fields = self.mapping(node, field_path, _RULE_KEYS, _ELSEWHERE_RULE)
        if fields is None:
            return None

        def value(key: str) -> tuple[Node, str] | None:
            return (fields[key][1], _child(field_path, key)) if key in fields else None

        ok = True
        rule_id: str | None = None
        if (v := value("id")) is not None:
            rule_id = self.ident(*v)
            if rule_id is not None and rule_id in seen:
                self.problem(v[0], v[1], f"duplicate rule id {rule_id!r} in this post "
                                         f"(first used on {self.where(seen[rule_id])})")
                rule_id = None
            elif rule_id is not None:
                seen[rule_id] = v[0]
        need = self.integer(*v, minimum=1) if (v := value("need")) is not None else None
        reach: float | None = None
        if (v := value("reach_s")) is not None:
            reach = self.number(*v, minimum=0)
            ok = ok and reach is not None
            if reach is not None and not at_point:
                self.problem(v[0], v[1], "reach_s needs a point post ('at'): travel to an "
                                         "area is not defined")
                ok = False
        within: float | None = None
        if (v := value("within_m")) is not None:
            within = self.number(*v, minimum=0)
        elif "reach_s" in fields:
            within = math.inf  # reach_s alone: no distance condition
            if "release_m" in fields:
                self.problem(fields["release_m"][0], _child(field_path, "release_m"),
                             "release_m needs within_m")
                ok = False
        else:
            self.problem(node, _child(field_path, "within_m"),
                         "missing required key 'within_m'")
        release = within
        if (v := value("release_m")) is not None and within != math.inf:
            release = self.number(*v, minimum=0)
            if release is not None and within is not None and release < within:
                self.problem(v[0], v[1], f"release_m ({release:g}) must be >= within_m "
                                         f"({within:g})")
                ok = False
        grace = 0.0
        if (v := value("grace_s")) is not None:
            grace_value = self.number(*v, minimum=0)
            ok = ok and grace_value is not None
            grace = grace_value or 0.0
        capability: str | None = None
        if (v := value("capability")) is not None:
            capability = self.ident(*v)
            ok = ok and capability is not None
        when: str | None = None
        if (v := value("when")) is not None:
            when = self.ident(*v)
            if when is not None and when not in flags:
                declared = ", ".join(sorted(flags)) or "none are declared"
                self.problem(v[0], v[1], f"unknown flag {when!r}{_hint(when, list(flags))} "
                                         f"(flags: {declared})")
                when = None
            ok = ok and when is not None
        when_gate_open = False
        if (v := value("when_gate_open")) is not None:
            gate_value = self.boolean(*v)
            if gate_value and not gate:
                self.problem(v[0], v[1], "when_gate_open needs the post to have 'gate: true'")
                ok = False
            ok = ok and gate_value is not None
            when_gate_open = bool(gate_value)
        if not ok or rule_id is None or need is None or within is None or release is None:
            return None
        try:
            return Rule(id=rule_id, need=need, within_m=within, release_m=release,
                        grace_s=grace, capability=capability, when=when,
                        when_gate_open=when_gate_open, reach_s=reach)
        except ValueError as e:
            self.problem(node, field_path, str(e))
            return None

