"""Wording lint for the free-text post orders: vague phrases, and distances or
officer counts that differ from the post's cover rules.

Vague wording ("short patrol", "as required") leaves an officer to guess what
the post needs; a number in the free text that the rules do not use ("within
50 m" where the rule says 25 m, "one armed officer" where it needs 2) gives
two answers to the same question. Both are reported as warnings with the
character span of the words in the post's ``orders`` text; the site-file
adapter turns spans into file lines and columns.

Numbers are read as digits or the words one to ten, before ``m``/``metre(s)``/
``meter(s)`` (a distance) or before ``officer(s)``, with at most two words in
between (a count, e.g. "two armed officers"). A count whose words name a
capability of one of the post's rules is compared with those rules only.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coverwatch.domain.changes import format_number
from coverwatch.domain.site import Post, Site

__all__ = [
    "DEFAULT_VAGUE_PHRASES",
    "LintConfig",
    "OrdersWarning",
    "lint_orders",
    "lint_post",
    "lint_reach",
    "phrase_pattern",
]

#: Phrases that leave an officer to guess what the post requires.
DEFAULT_VAGUE_PHRASES: tuple[str, ...] = (
    "short patrol",
    "roving",
    "as required",
    "where possible",
    "periodically",
    "regularly",
    "when possible",
    "if possible",
    "as necessary",
    "from time to time",
)

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10}  # fmt: skip
_NUMBER = r"(?P<n>\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_DISTANCE = re.compile(rf"\b{_NUMBER}\s*(?:metres|meters|metre|meter|m)\b", re.IGNORECASE)
_COUNT = re.compile(rf"\b{_NUMBER}\s+(?P<between>(?:[a-z][a-z-]*\s+){{0,2}}?)officers?\b",
                    re.IGNORECASE)
# Words that mean the number does not count officers ("one of the officers").
_NOT_A_COUNT = {"of", "the", "to", "from", "and", "or", "with", "per", "for", "by", "m",
                "metres", "meters", "metre", "meter", "minutes", "min", "seconds", "s"}

_Warn = Callable[[re.Match[str], str], None]


@dataclass(frozen=True, slots=True)
class LintConfig:
    """What the lint looks for. ``vague_phrases`` are matched case-insensitively,
    as whole words, with any run of spaces or line breaks between words."""

    vague_phrases: tuple[str, ...] = DEFAULT_VAGUE_PHRASES


@dataclass(frozen=True, slots=True)
class OrdersWarning:
    """One wording problem in a post's free-text orders.

    ``start``/``end`` are character offsets into that post's ``orders`` text;
    ``quote`` is the words as written there.
    """

    post_index: int
    post_id: str
    start: int
    end: int
    quote: str
    message: str

    @property
    def field(self) -> str:
        """The site-file field path, e.g. ``posts[0].orders``."""
        return f"posts[{self.post_index}].orders"


@functools.lru_cache(maxsize=512)  # compiled once, not once per post
def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """A case-insensitive whole-word pattern for ``phrase``, any whitespace between words."""
    words = phrase.split()
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)",
                      re.IGNORECASE)


def _value(text: str) -> float:
    return float(_NUMBER_WORDS.get(text.lower(), 0) or text)


def _listing(values: Iterable[float], unit: str) -> str:
    shown = [f"{format_number(v)}{unit}" for v in sorted(set(values))]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def lint_post(site: Site, index: int, config: LintConfig = LintConfig()) -> list[OrdersWarning]:
    """Wording warnings for the post at ``site.posts[index]``, in text order."""
    post = site.posts[index]
    text = post.orders
    out: list[OrdersWarning] = []

    def warn(match: re.Match[str], message: str) -> None:
        out.append(OrdersWarning(index, post.id, match.start(), match.end(), match.group(0),
                                 message))

    for phrase in config.vague_phrases:
        for match in phrase_pattern(phrase).finditer(text):
            warn(match, f"vague wording {' '.join(match.group(0).split())!r}: say exactly "
                        "who must be where, for how long and when")
    for match in _DISTANCE.finditer(text):
        _check_distance(post, match, warn)
    for match in _COUNT.finditer(text):
        _check_count(post, match, warn)
    out.sort(key=lambda w: (w.start, w.end))
    return out


def _check_distance(post: Post, match: re.Match[str], warn: _Warn) -> None:
    said = _value(match.group("n"))
    allowed = {d for r in post.rules for d in (r.within_m, r.release_m) if not math.isinf(d)}
    quote = " ".join(match.group(0).split())
    if not post.rules:
        warn(match, f"the orders say {quote!r} but this post has no cover rule")
    elif not allowed:
        warn(match, f"the orders say {quote!r} but this post's rules use travel time, "
                    "not a distance")
    elif said not in allowed:
        warn(match, f"the orders say {quote!r} but the cover rules use "
                    f"{_listing(allowed, ' m')}: give the rule's distance or none")


def _check_count(post: Post, match: re.Match[str], warn: _Warn) -> None:
    between = match.group("between").lower().split()
    if any(word in _NOT_A_COUNT for word in between):
        return
    said = _value(match.group("n"))
    quote = " ".join(match.group(0).split())
    named = [r for r in post.rules if r.capability is not None and r.capability in between]
    rules = named or list(post.rules)
    if not rules:
        warn(match, f"the orders say {quote!r} but this post has no cover rule")
        return
    needs = {float(r.need) for r in rules}
    if said not in needs:
        which = f"{named[0].capability} rules" if named else "cover rules"
        warn(match, f"the orders say {quote!r} but the {which} need "
                    f"{_listing(needs, '')}: give the rule's number or none")


def lint_orders(site: Site, config: LintConfig = LintConfig()) -> tuple[OrdersWarning, ...]:
    """Wording warnings for every post's free-text orders, in file order."""
    return tuple(w for i in range(len(site.posts)) for w in lint_post(site, i, config))


def lint_reach(site: Site, *, has_escalation: bool, devices: int | None) -> list[str]:
    """What keeps a site from seeing a phone or from reaching a person.

    ``devices``: how many devices the site has in its store, None when no store
    was named (then a missing origin is reported, since any phone would need it).
    """
    out: list[str] = []
    if site.origin is None and (devices is None or devices > 0):
        had = "" if devices is None else f" (it has {devices} device(s))"
        out.append(f"origin: the site has no origin{had}, so a phone's latitude/longitude "
                   "(OsmAnd, Traccar Client, OwnTracks, GPX) cannot be placed on it and "
                   "counts for no post: add `origin: {lat, lon}` (docs/site-file.md)")
    if not has_escalation and any(post.rules for post in site.posts):
        out.append("escalation: the site has rules that raise alerts but no `escalation:` "
                   "section, so an alert reaches nobody: add one (docs/site-file.md)")
    return out
