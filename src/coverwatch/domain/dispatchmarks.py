"""Marks on a dispatch suggestion: why sending this officer may open another gap.

An officer is marked when the post they are rostered to is itself lapsed (they
are probably needed there), or when they count at a post whose rule is met with
no one to spare (a hard rule: sending them lapses it). Pure; the server gives
the cover states and the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["dispatch_marks"]


def dispatch_marks(candidate: Mapping[str, Any], states: Iterable[Mapping[str, Any]],
                   name_of: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for one candidate (``rostered``: "post X"; ``now_at``: ["post/rule"])."""
    names = name_of or {}
    by_rule = {(str(s["post"]), str(s["rule"])): s for s in states}
    lapsed_posts = {p for (p, _), s in by_rule.items() if s.get("state") == "lapsed"}
    out: list[str] = []
    rostered = str(candidate.get("rostered") or "")
    if rostered.startswith("post "):
        post = rostered.removeprefix("post ")
        if post in lapsed_posts:
            out.append(f"their own post {names.get(post, post)} is lapsed")
    now_at: Sequence[str] = candidate.get("now_at") or ()
    for key in now_at:
        post, _, rule = key.partition("/")
        st = by_rule.get((post, rule))
        if st is not None and st.get("state") == "covered" and st.get("count") == st.get("need"):
            out.append(f"needed at {names.get(post, post)} ({rule}: {st['count']} of "
                       f"{st['need']}, none to spare)")
    return out
