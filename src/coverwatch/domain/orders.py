"""Post orders generated from the cover rules, their versions, and what changed.

Each post's orders are rendered only from the rules the engine evaluates (and
the site settings that change what counts: ``stale_after_s``, walking speeds
and walkways for ``reach_s`` rules), followed by the post's free-text
``orders`` from the site file. So the orders an officer reads and the cover
the engine checks cannot disagree: every rule field changes the wording.

A post's orders carry a content-derived version: the first 12 hex digits of
the SHA-256 of the rendered text and the rule data. :func:`orders_changes`
compares two sites and says per post, in plain words, what changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

from coverwatch.domain.changes import diff_sites, format_number, format_seconds
from coverwatch.domain.site import Post, Rule, Site

__all__ = [
    "OrdersChange",
    "PostOrders",
    "orders_changes",
    "post_orders",
    "render_rule",
    "site_orders",
    "site_orders_version",
]

VERSION_DIGITS = 12


@dataclass(frozen=True, slots=True)
class PostOrders:
    """One post's orders.

    ``rules`` holds one paragraph per cover rule (in file order, with the rule
    ids in ``rule_ids``); ``general`` the sentences that apply to every rule of
    the post; ``free_text`` the site file's ``orders`` text, stripped.
    """

    post_id: str
    post_name: str
    rule_ids: tuple[str, ...]
    rules: tuple[str, ...]
    general: tuple[str, ...]
    free_text: str
    version: str

    @property
    def text(self) -> str:
        """The whole orders as plain text: rules, general points, free text."""
        parts = [f"{i}. {text}" for i, text in enumerate(self.rules, 1)]
        parts += [f"- {text}" for text in self.general]
        if self.free_text:
            parts.append(self.free_text)
        return "\n".join(parts)


def _who(rule: Rule) -> str:
    noun = "officer" if rule.need == 1 else "officers"
    if rule.capability is not None:
        noun = f"{rule.capability} {noun}"
    return f"{rule.need} {noun}"


def _activation(rule: Rule) -> str:
    if rule.when is not None and rule.when_gate_open:
        return f"whenever {rule.when} is on and the gate is open"
    if rule.when is not None:
        return f"whenever {rule.when} is on"
    if rule.when_gate_open:
        return "whenever the gate is open"
    return "at all times"


def _place(post: Post, within_m: float) -> str:
    if post.area is not None:
        if within_m == 0:
            return f"inside the {post.name} area"
        return f"inside or within {format_number(within_m)} m of the {post.name} area"
    return f"within {format_number(within_m)} m of {post.name}"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def render_rule(site: Site, post: Post, rule: Rule) -> str:
    """One rule as plain-language orders (a short paragraph)."""
    verb = "must be" if rule.need == 1 else "must"
    has_distance = not math.isinf(rule.within_m)
    duties: list[str] = []
    if has_distance:
        duties.append(("stay " if rule.need > 1 else "") + _place(post, rule.within_m))
    if rule.reach_s is not None:
        target = "it" if has_distance else post.name
        duties.append(f"be able to reach {target} on foot along the walkways within "
                      f"{format_seconds(rule.reach_s)}")
    if rule.need == 1:
        # "must be within 10 m" / "must be able to reach" reads better for one officer.
        duties = [d.removeprefix("be ") for d in duties]
    sentences = [f"At least {_who(rule)} {verb} {' and '.join(duties)} {_activation(rule)}."]
    if has_distance and rule.release_m > rule.within_m:
        sentences.append(
            f"An officer counts once within {format_number(rule.within_m)} m and keeps "
            f"counting until more than {format_number(rule.release_m)} m away.")
    if rule.reach_s is not None:
        speed = site.speed_for(rule.capability)
        sentences.append(
            f"Reach is timed at {format_number(speed)} m/s: at most "
            f"{format_number(round(speed * rule.reach_s, 1))} m of walkway from where you are.")
    if rule.need == 1:
        noun = "officer" if rule.capability is None else f"{rule.capability} officer"
        article = "an" if noun[0] in "aeiou" else "a"
        short = f"the post {{}} left without {article} {noun}"
    else:
        short = f"cover {{}} drop below {rule.need}"
    if rule.grace_s == 0:
        sentences.append(_upper_first(short.format("must never be" if rule.need == 1
                                                   else "must never"))
                         + ": supervisors are alerted at once.")
    else:
        sentences.append(_upper_first(short.format("may be" if rule.need == 1 else "may"))
                         + f" for no more than {format_seconds(rule.grace_s)}; after that "
                         "supervisors are alerted.")
    return " ".join(sentences)


def _general(site: Site, post: Post) -> tuple[str, ...]:
    if not post.rules:
        return ()
    out = [f"Keep your device on: a position older than {format_seconds(site.stale_after_s)} "
           "does not count.",
           "You count only while you are booked on duty. A poor position fix counts as "
           "farther away by its stated accuracy."]
    capabilities = sorted({r.capability for r in post.rules if r.capability is not None})
    if capabilities:
        names = " or ".join(capabilities)
        out.append(f"For {names} cover you count only while booked on duty as {names}.")
    return tuple(out)


def _rule_data(rule: Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "need": rule.need,
        "capability": rule.capability,
        "within_m": None if math.isinf(rule.within_m) else rule.within_m,
        "release_m": None if math.isinf(rule.release_m) else rule.release_m,
        "grace_s": rule.grace_s,
        "when": rule.when,
        "when_gate_open": rule.when_gate_open,
        "reach_s": rule.reach_s,
    }


def _version(site: Site, post: Post, text: str) -> str:
    data: dict[str, object] = {
        "post": post.id,
        "name": post.name,
        "at": post.at,
        "area": post.area,
        "gate": post.gate,
        "rules": [_rule_data(r) for r in post.rules],
        "stale_after_s": site.stale_after_s,
        "text": text,
    }
    if any(r.reach_s is not None for r in post.rules):
        # Travel times depend on the walkways, barriers and speeds.
        data["walkways"] = [(w.id, w.points, w.one_way) for w in site.walkways]
        data["barriers"] = [(b.id, b.points) for b in site.barriers]
        data["speeds"] = sorted(site.speeds_mps.items())
        data["origin"] = None if site.origin is None else (site.origin.lat, site.origin.lon)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:VERSION_DIGITS]


def post_orders(site: Site, post: Post) -> PostOrders:
    """The orders of one post of ``site``, with their version."""
    rules = tuple(render_rule(site, post, rule) for rule in post.rules)
    if not rules:
        rules = ("No cover rule applies to this post.",)
    orders = PostOrders(
        post_id=post.id,
        post_name=post.name,
        rule_ids=tuple(r.id for r in post.rules),
        rules=rules,
        general=_general(site, post),
        free_text=post.orders.strip(),
        version="",
    )
    return PostOrders(orders.post_id, orders.post_name, orders.rule_ids, orders.rules,
                      orders.general, orders.free_text, _version(site, post, orders.text))


def site_orders(site: Site) -> tuple[PostOrders, ...]:
    """Every post's orders, in file order."""
    return tuple(post_orders(site, post) for post in site.posts)


def site_orders_version(orders: tuple[PostOrders, ...]) -> str:
    """A version for a whole set of orders: changes when any post's does."""
    joined = "\n".join(f"{o.post_id}:{o.version}" for o in orders)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:VERSION_DIGITS]


@dataclass(frozen=True, slots=True)
class OrdersChange:
    """How one post's orders differ between two sites.

    ``status`` is ``added``, ``removed``, ``changed`` (the version differs) or
    ``unchanged``; ``what`` lists the differences in plain words.
    """

    post_id: str
    post_name: str
    status: Literal["added", "removed", "changed", "unchanged"]
    old_version: str | None
    new_version: str | None
    what: tuple[str, ...]


def orders_changes(old: Site, new: Site) -> tuple[OrdersChange, ...]:
    """Per post (old file order, then new posts), what changed in its orders."""
    diff = diff_sites(old, new)
    site_wide = [c for c in diff.changes if c.post is None]
    old_orders = {o.post_id: o for o in site_orders(old)}
    new_orders = {o.post_id: o for o in site_orders(new)}
    out: list[OrdersChange] = []
    for post in old.posts:
        before = old_orders[post.id]
        after = new_orders.get(post.id)
        if after is None:
            out.append(OrdersChange(post.id, post.name, "removed", before.version, None,
                                    (f"post {post.name} removed",)))
            continue
        what = [c.description for c in diff.for_post(post.id)]
        if before.version != after.version:
            reach = any(r.reach_s is not None for r in post.rules) or any(
                r.reach_s is not None for r in new.post(post.id).rules)
            for change in site_wide:
                travel = change.field in ("walkways", "origin") or \
                    change.field.startswith("speeds_mps.")
                if change.field == "stale_after_s" or (reach and travel):
                    what.append(change.description)
            if not what:
                what.append("wording of the generated orders changed")
        status: Literal["changed", "unchanged"] = (
            "changed" if before.version != after.version else "unchanged")
        out.append(OrdersChange(post.id, after.post_name, status, before.version,
                                after.version, tuple(what) if status == "changed" else ()))
    for post in new.posts:
        if post.id not in old_orders:
            out.append(OrdersChange(post.id, post.name, "added", None,
                                    new_orders[post.id].version,
                                    (f"post {post.name} added",)))
    return tuple(out)
