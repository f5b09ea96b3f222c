"""The site file's ``escalation`` section, and the domain's escalation policies
built from it.

The section is a list of levels (``after_s``, ``notify``), or a mapping with the
levels for lapses and other alerts (``default``) and for device alarms
(``sos``). :class:`WrittenLevel` keeps the targets as written; the domain
wants ``role:supervisor`` / ``user:duty-inspector``, so :func:`escalation_policy`
and :func:`sos_escalation_policy` give a bare name its prefix (a role if it is
one of :data:`coverwatch.domain.roles.ROLES`, else a user).
"""

from __future__ import annotations

from dataclasses import dataclass

from yaml.nodes import MappingNode, Node

from coverwatch.domain.alerts import EscalationLevel, EscalationPolicy, parse_target
from coverwatch.domain.roles import ROLES
from coverwatch.formats._sitekeys import _LEVEL_KEYS, _POLICY_KEYS
from coverwatch.formats._siteyaml import _child, _item, _NodeChecker

__all__ = ["WrittenLevel", "_EscalationReader", "escalation_policy", "sos_escalation_policy"]


@dataclass(frozen=True, slots=True)
class WrittenLevel:
    """One escalation step as the file writes it (for the checker's messages and the
    document's source): after ``after_s`` seconds of an unacknowledged alert, notify
    these targets (role names, user names or URLs, as written). The domain's
    :class:`~coverwatch.domain.alerts.EscalationLevel` is what the policy holds."""

    after_s: float
    notify: tuple[str, ...]


def _target(written: str) -> str:
    """A site-file target as the domain spells it: a bare role or user name gets its prefix."""
    if "://" in written or written.partition(":")[0] in ("role", "user"):
        return written
    return f"role:{written}" if written in ROLES else f"user:{written}"


def escalation_policy(levels: tuple[WrittenLevel, ...]) -> EscalationPolicy:
    """The site file's escalation levels as the domain's policy. Raises ``ValueError``
    for a target the domain cannot parse (e.g. ``role:`` with no name)."""
    return EscalationPolicy(tuple(
        EscalationLevel(lv.after_s, tuple(_target(t) for t in lv.notify)) for lv in levels
    ))


def sos_escalation_policy(levels: tuple[WrittenLevel, ...],
                          sos_levels: tuple[WrittenLevel, ...] | None) -> EscalationPolicy:
    """How device alarms (sos, fall) escalate: the site's ``escalation.sos`` levels, or
    else every level of the default policy at once (nobody waits on an SOS)."""
    if sos_levels is not None:
        return escalation_policy(sos_levels)
    return EscalationPolicy(tuple(
        EscalationLevel(0.0, tuple(_target(t) for t in lv.notify)) for lv in levels))


class _EscalationReader(_NodeChecker):
    """Reads the ``escalation`` section; the ``sos`` levels, if given, land in
    ``sos_levels``."""

    sos_levels: tuple[WrittenLevel, ...] | None

    def escalation_section(self, node: Node) -> tuple[WrittenLevel, ...]:
        """A list of levels, or ``{default: [levels], sos: [levels]}``."""
        if not isinstance(node, MappingNode):
            return self.escalation(node, "escalation")
        fields = self.mapping(node, "escalation", _POLICY_KEYS)
        if fields is None:
            return ()
        if "sos" in fields:
            self.sos_levels = self.escalation(fields["sos"][1], "escalation.sos")
        if "default" in fields:
            return self.escalation(fields["default"][1], "escalation.default")
        return ()

    def escalation(self, node: Node, where: str = "escalation") -> tuple[WrittenLevel, ...]:
        items = self.sequence(node, where)
        if items is None:
            return ()
        levels: list[WrittenLevel] = []
        previous: float | None = None
        for index, item in enumerate(items):
            field_path = _item(where, index)
            fields = self.mapping(item, field_path, _LEVEL_KEYS)
            if fields is None:
                continue
            after: float | None = None
            if "after_s" in fields:
                after_node = fields["after_s"][1]
                after = self.number(after_node, _child(field_path, "after_s"), minimum=0)
                if after is not None and previous is not None and after < previous:
                    self.problem(after_node, _child(field_path, "after_s"),
                                 f"levels go in order of delay: {after:g} is less than the "
                                 f"previous level's {previous:g}")
                if after is not None:
                    previous = after
            notify = self.targets(fields["notify"][1], _child(field_path, "notify")) \
                if "notify" in fields else None
            if after is not None and notify is not None:
                levels.append(WrittenLevel(after_s=after, notify=notify))
        return tuple(levels)

    def targets(self, node: Node, field_path: str) -> tuple[str, ...] | None:
        items = self.sequence(node, field_path)
        if items is None:
            return None
        if not items:
            self.problem(node, field_path, "a level must notify at least one target")
            return None
        targets = [self.string(item, _item(field_path, i), empty_ok=False)
                   for i, item in enumerate(items)]
        if any(t is None for t in targets):
            return None
        usable = True
        for i, (item, target) in enumerate(zip(items, targets, strict=True)):
            try:  # the policy is built at load: a target it cannot take is the file's problem
                parse_target(_target((target or "").strip()))
            except ValueError as e:
                self.problem(item, _item(field_path, i), str(e))
                usable = False
        return tuple(t.strip() for t in targets if t is not None) if usable else None


