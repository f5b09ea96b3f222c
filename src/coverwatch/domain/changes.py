"""Classify the differences between two versions of a site as weakening,
strengthening or neutral for cover, and say who may approve them.

A change *weakens* cover when the new rules can be met by fewer officers, from
farther away, for less of the time, or after a longer unalerted lapse; it
*strengthens* cover when it does the opposite. Names and free text are
*neutral*. A change whose effect on cover cannot be shown to be a
strengthening (a capability swapped for another, a flag swapped for another, a
post moved, walkways edited under a ``reach_s`` rule) is treated as weakening:
when in doubt, the stricter approval applies. The full table is in
docs/orders.md.

:func:`diff_sites` returns a :class:`SiteDiff`; :func:`required_approval`
maps it to the role that must approve it. Rules and posts are matched by id,
so renaming a rule's id reads as one rule removed and another added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from coverwatch.domain.site import Post, Rule, Site

__all__ = [
    "Change",
    "ChangeKind",
    "Overall",
    "SiteDiff",
    "diff_sites",
    "format_number",
    "format_seconds",
    "required_approval",
]

ChangeKind = Literal["weakening", "strengthening", "neutral"]
Overall = Literal["weakening", "strengthening", "neutral", "none"]
Value = str | float | bool | None


def format_number(x: float) -> str:
    """A number as people write it: ``25``, ``12.5``. Distinct floats stay distinct."""
    if math.isinf(x):
        return "any"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def format_seconds(seconds: float) -> str:
    """A rule duration: ``"30 s"``, ``"5 min"``, ``"2 h"``; exact, never rounded."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{format_number(seconds / 3600)} h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{format_number(seconds / 60)} min"
    return f"{format_number(seconds)} s"


def _metres(x: float) -> str:
    return "any distance" if math.isinf(x) else f"{format_number(x)} m"


def _officers(n: int) -> str:
    return f"{n} officer" if n == 1 else f"{n} officers"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two sites.

    ``post`` and ``rule`` are ids (None for site-wide changes and for post-level
    changes respectively); ``field`` names what changed (a rule field, or
    ``rule``/``post`` for a whole rule or post added or removed); ``old`` and
    ``new`` are the values (None when absent); ``description`` says it in plain
    words.
    """

    kind: ChangeKind
    post: str | None
    rule: str | None
    field: str
    old: Value
    new: Value
    description: str

    def to_dict(self) -> dict[str, Value]:
        """A JSON-ready form, for the audit log."""
        return {
            "kind": self.kind,
            "post": self.post,
            "rule": self.rule,
            "field": self.field,
            "old": _json_value(self.old),
            "new": _json_value(self.new),
            "description": self.description,
        }


def _json_value(value: Value) -> Value:
    # JSON has no infinity; a reach-only rule's within_m is infinite.
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


@dataclass(frozen=True, slots=True)
class SiteDiff:
    """Every difference between an old and a new site, in file order."""

    changes: tuple[Change, ...]

    @property
    def weakening(self) -> tuple[Change, ...]:
        """The changes that weaken cover."""
        return tuple(c for c in self.changes if c.kind == "weakening")

    @property
    def strengthening(self) -> tuple[Change, ...]:
        """The changes that strengthen cover."""
        return tuple(c for c in self.changes if c.kind == "strengthening")

    @property
    def overall(self) -> Overall:
        """``weakening`` if any change weakens cover, else ``strengthening`` if
        any strengthens it, else ``neutral``; ``none`` when nothing changed."""
        if not self.changes:
            return "none"
        if self.weakening:
            return "weakening"
        if self.strengthening:
            return "strengthening"
        return "neutral"

    def for_post(self, post_id: str) -> tuple[Change, ...]:
        """The changes made to one post (not the site-wide ones)."""
        return tuple(c for c in self.changes if c.post == post_id)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form, for the audit log."""
        return {"overall": self.overall, "changes": [c.to_dict() for c in self.changes]}


def required_approval(diff: SiteDiff) -> Literal["admin", "approver"]:
    """Who must approve applying ``diff``.

    ``"approver"``: at least one change weakens cover, so a user with the
    site's configured approving role must apply it, with a written reason.
    ``"admin"``: the change only strengthens cover or is neutral (names, free
    text), or there is no change at all; an admin may apply it.
    """
    return "approver" if diff.overall == "weakening" else "admin"


def diff_sites(old: Site, new: Site) -> SiteDiff:
    """Compare two sites and classify every difference (see the module doc)."""
    changes: list[Change] = []
    changes.extend(_site_changes(old, new))
    old_posts = {p.id: p for p in old.posts}
    new_posts = {p.id: p for p in new.posts}
    for post in old.posts:
        if post.id not in new_posts:
            kind: ChangeKind = "weakening" if post.rules else "neutral"
            changes.append(Change(kind, post.id, None, "post", post.name, None,
                                  f"post {post.name} removed with its "
                                  f"{len(post.rules)} rule(s)"))
        else:
            changes.extend(_post_changes(post, new_posts[post.id]))
    for post in new.posts:
        if post.id not in old_posts:
            kind = "strengthening" if post.rules else "neutral"
            changes.append(Change(kind, post.id, None, "post", None, post.name,
                                  f"post {post.name} added with {len(post.rules)} rule(s)"))
    return SiteDiff(tuple(changes))


def _reach_capabilities(site: Site) -> set[str | None]:
    return {r.capability for _, r in site.rules() if r.reach_s is not None}


def _site_changes(old: Site, new: Site) -> list[Change]:
    out: list[Change] = []
    if old.name != new.name:
        out.append(Change("neutral", None, None, "name", old.name, new.name,
                          f"site renamed from {old.name} to {new.name}"))
    if old.timezone != new.timezone:
        out.append(Change("neutral", None, None, "timezone", old.timezone, new.timezone,
                          f"time zone changed from {old.timezone} to {new.timezone}"))
    if old.stale_after_s != new.stale_after_s:
        kind = _larger_weakens(old.stale_after_s, new.stale_after_s)
        out.append(Change(kind, None, None, "stale_after_s", old.stale_after_s,
                          new.stale_after_s,
                          f"a position counts for {format_seconds(new.stale_after_s)} instead "
                          f"of {format_seconds(old.stale_after_s)}"))
    if old.origin != new.origin:
        # Moving the origin moves every post relative to GPS fixes.
        out.append(Change("weakening", None, None, "origin", _origin(old), _origin(new),
                          "site origin moved: every post moves relative to GPS positions"))
    used = {r.when for _, r in new.rules() if r.when is not None}
    for flag in sorted(set(old.flags) | set(new.flags)):
        before, after = old.flags.get(flag), new.flags.get(flag)
        if before == after:
            continue
        if before is None or after is None:
            out.append(Change("neutral", None, None, f"flags.{flag}", before, after,
                              f"flag {flag} {'added' if before is None else 'removed'}"))
            continue
        # A flag's start value decides whether its rules apply until the first flag event.
        kind = "neutral" if flag not in used else ("strengthening" if after else "weakening")
        out.append(Change(kind, None, None, f"flags.{flag}", before, after,
                          f"flag {flag} now starts {'on' if after else 'off'}"))
    reach = _reach_capabilities(old) | _reach_capabilities(new)
    if reach:
        # One change per reach capability whose effective walking speed changed.
        for capability in sorted(reach, key=lambda c: c or ""):
            before_v, after_v = old.speed_for(capability), new.speed_for(capability)
            if before_v != after_v:
                who = "officers" if capability is None else f"{capability} officers"
                out.append(Change(_larger_weakens(before_v, after_v), None, None,
                                  f"speeds_mps.{capability or 'default'}", before_v, after_v,
                                  f"reach rules assume {who} move at {format_number(after_v)} "
                                  f"m/s instead of {format_number(before_v)} m/s"))
        if old.walkways != new.walkways or old.barriers != new.barriers:
            # Travel times may go either way; treat as weakening.
            out.append(Change("weakening", None, None, "walkways", None, None,
                              "walkways or barriers changed: travel times for reach rules "
                              "change"))
    elif old.walkways != new.walkways or old.barriers != new.barriers:
        out.append(Change("neutral", None, None, "walkways", None, None,
                          "walkways or barriers changed (no rule uses reach)"))
    return out


def _origin(site: Site) -> str | None:
    return None if site.origin is None else f"{site.origin.lat}, {site.origin.lon}"


def _larger_weakens(old: float, new: float) -> ChangeKind:
    return "weakening" if new > old else "strengthening"


def _place(post: Post) -> str:
    if post.at is not None:
        return f"({format_number(post.at[0])}, {format_number(post.at[1])})"
    corners = ", ".join(f"({format_number(x)}, {format_number(y)})" for x, y in post.area or ())
    return f"area [{corners}]"


def _post_changes(old: Post, new: Post) -> list[Change]:
    out: list[Change] = []
    pid = old.id
    if old.name != new.name:
        out.append(Change("neutral", pid, None, "name", old.name, new.name,
                          f"renamed from {old.name} to {new.name}"))
    if old.at != new.at or old.area != new.area:
        out.append(Change("weakening" if old.rules or new.rules else "neutral", pid, None,
                          "place", _place(old), _place(new),
                          f"moved from {_place(old)} to {_place(new)}"))
    if old.gate != new.gate:
        out.append(Change("neutral", pid, None, "gate", old.gate, new.gate,
                          "now has a gate" if new.gate else "no longer has a gate"))
    if old.orders.strip() != new.orders.strip():
        out.append(Change("neutral", pid, None, "orders", old.orders, new.orders,
                          "written orders changed"))
    old_rules = {r.id: r for r in old.rules}
    new_rules = {r.id: r for r in new.rules}
    for rule in old.rules:
        if rule.id not in new_rules:
            out.append(Change("weakening", pid, rule.id, "rule", _summary(rule), None,
                              f"rule {rule.id} removed ({_summary(rule)})"))
        else:
            out.extend(_rule_changes(pid, rule, new_rules[rule.id]))
    for rule in new.rules:
        if rule.id not in old_rules:
            out.append(Change("strengthening", pid, rule.id, "rule", None, _summary(rule),
                              f"rule {rule.id} added ({_summary(rule)})"))
    return out


def _summary(rule: Rule) -> str:
    """A short description of a rule, for added/removed messages."""
    who = _officers(rule.need) if rule.capability is None else \
        f"{rule.need} {rule.capability} officer{'' if rule.need == 1 else 's'}"
    where = []
    if not math.isinf(rule.within_m):
        where.append(f"within {_metres(rule.within_m)}")
    if rule.reach_s is not None:
        where.append(f"able to reach it within {format_seconds(rule.reach_s)}")
    return f"{who} {' and '.join(where)}"


def _activation(rule: Rule) -> str:
    parts = []
    if rule.when is not None:
        parts.append(f"{rule.when} is on")
    if rule.when_gate_open:
        parts.append("the gate is open")
    return "at all times" if not parts else "while " + " and ".join(parts)


def _rule_changes(pid: str, old: Rule, new: Rule) -> list[Change]:
    out: list[Change] = []
    rid = old.id

    def add(kind: ChangeKind, name: str, before: Value, after: Value, text: str) -> None:
        out.append(Change(kind, pid, rid, name, before, after, f"rule {rid}: {text}"))

    if old.need != new.need:
        add("weakening" if new.need < old.need else "strengthening", "need",
            old.need, new.need, f"needs {_officers(new.need)} instead of {old.need}")
    if old.capability != new.capability:
        before = "any officer" if old.capability is None else f"only {old.capability} officers"
        after = "any officer" if new.capability is None else f"only {new.capability} officers"
        # Only adding a requirement narrows who counts; dropping or swapping one may widen it.
        kind: ChangeKind = "strengthening" if old.capability is None else "weakening"
        add(kind, "capability", old.capability, new.capability,
            f"counts {after} instead of {before}")
    if old.within_m != new.within_m:
        add(_larger_weakens(old.within_m, new.within_m), "within_m", old.within_m,
            new.within_m, f"counts officers within {_metres(new.within_m)} instead of "
                          f"{_metres(old.within_m)}")
    if old.release_m != new.release_m:
        add(_larger_weakens(old.release_m, new.release_m), "release_m", old.release_m,
            new.release_m, f"keeps counting an officer until farther than "
                           f"{_metres(new.release_m)} instead of {_metres(old.release_m)}")
    if old.grace_s != new.grace_s:
        add(_larger_weakens(old.grace_s, new.grace_s), "grace_s", old.grace_s, new.grace_s,
            f"cover may be short for {format_seconds(new.grace_s)} before an alert instead "
            f"of {format_seconds(old.grace_s)}")
    if old.reach_s != new.reach_s:
        if old.reach_s is None:
            add("strengthening", "reach_s", None, new.reach_s,
                f"now also requires reaching the post along walkways within "
                f"{format_seconds(new.reach_s or 0.0)}")
        elif new.reach_s is None:
            add("weakening", "reach_s", old.reach_s, None,
                f"no longer requires reaching the post along walkways within "
                f"{format_seconds(old.reach_s)}")
        else:
            add(_larger_weakens(old.reach_s, new.reach_s), "reach_s", old.reach_s,
                new.reach_s, f"requires reaching the post within "
                             f"{format_seconds(new.reach_s)} instead of "
                             f"{format_seconds(old.reach_s)}")
    if old.when != new.when:
        # Adding or swapping a condition can leave times when the rule no longer applies.
        kind = "strengthening" if new.when is None else "weakening"
        add(kind, "when", old.when, new.when,
            f"applies {_activation(new)} instead of {_activation(old)}")
    if old.when_gate_open != new.when_gate_open:
        kind = "weakening" if new.when_gate_open else "strengthening"
        add(kind, "when_gate_open", old.when_gate_open, new.when_gate_open,
            "applies only while the gate is open" if new.when_gate_open
            else "applies whether the gate is open or closed")
    return out
