"""The site model: posts, gates, flags and the cover rules they carry.

These are plain frozen dataclasses built by the site-file loader (an adapter)
and read by the engine. Validation of user input happens in the loader; the
invariants checked here are the ones the engine relies on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from coverwatch.domain.tours import DEFAULT_SCAN_WALK_MPS, Checkpoint, Tour

__all__ = [
    "DEFAULT_ACCURACY_M", "DEFAULT_SPEEDS_MPS", "Barrier", "LatLon", "Post", "Rule", "Site",
    "Walkway",
]

#: Walking speeds when a site gives none: 3 m/s for everyone.
DEFAULT_SPEEDS_MPS: Mapping[str, float] = MappingProxyType({"default": 3.0})


@dataclass(frozen=True, slots=True)
class LatLon:
    """A WGS-84 position in degrees; the origin of the site's local metres."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Rule:
    """A cover rule: at least ``need`` officers within ``within_m`` of the post.

    ``release_m`` (>= ``within_m``) adds hysteresis: an officer who is in stays
    in until farther than ``release_m``. ``when`` names a site flag that must be
    on, and ``when_gate_open`` makes the rule apply only while the post's gate
    is open. ``grace_s`` is how long a lapse may last before it is alerted.
    ``reach_s`` (optional) also requires the officer's travel time to the post
    along the site's walkways to be at most this many seconds; a rule with only
    ``reach_s`` has ``within_m = release_m = inf``. See docs/semantics.md.
    """

    id: str
    need: int
    within_m: float
    release_m: float
    grace_s: float = 0.0
    capability: str | None = None
    when: str | None = None
    when_gate_open: bool = False
    reach_s: float | None = None

    def __post_init__(self) -> None:
        if self.reach_s is not None and not self.reach_s >= 0:
            raise ValueError(f"rule {self.id}: reach_s must be >= 0")
        if self.need < 1:
            raise ValueError(f"rule {self.id}: need must be >= 1")
        if self.within_m < 0 or self.release_m < self.within_m:
            raise ValueError(f"rule {self.id}: need 0 <= within_m <= release_m")
        if self.grace_s < 0:
            raise ValueError(f"rule {self.id}: grace_s must be >= 0")


@dataclass(frozen=True, slots=True)
class Walkway:
    """A walkable polyline in site metres. Walkways join where they share a point.

    ``one_way`` walkways may only be walked from the first point towards the last.
    """

    id: str
    points: tuple[tuple[float, float], ...]
    one_way: bool = False

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError(f"walkway {self.id}: needs at least 2 points")


@dataclass(frozen=True, slots=True)
class Barrier:
    """Something that cuts walkways: a point, or a polyline (a fence, a locked door).

    A walkway is cut where it crosses or touches the barrier: the two sides are
    not joined there.
    """

    id: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 1:
            raise ValueError(f"barrier {self.id}: needs at least 1 point")


@dataclass(frozen=True, slots=True)
class Post:
    """A guarded place: a point (``at``) or a polygon (``area``), in site metres."""

    id: str
    name: str
    rules: tuple[Rule, ...]
    at: tuple[float, float] | None = None
    area: tuple[tuple[float, float], ...] | None = None
    gate: bool = False
    orders: str = ""

    def __post_init__(self) -> None:
        if (self.at is None) == (self.area is None):
            raise ValueError(f"post {self.id}: give exactly one of `at` or `area`")
        if self.area is not None and len(self.area) < 3:
            raise ValueError(f"post {self.id}: an area needs at least 3 points")


# Phones indoors or among buildings, without assisted positioning, are typically
# 40-60 m accurate: 50 m keeps a fix with no stated accuracy from counting as exact.
DEFAULT_ACCURACY_M = 50.0


@dataclass(frozen=True, slots=True)
class Site:
    """A whole site: its posts and rules, flags, and how long a fix stays fresh."""

    id: str
    name: str
    posts: tuple[Post, ...]
    stale_after_s: float = 30.0
    flags: Mapping[str, bool] = field(default_factory=dict)
    origin: LatLon | None = None
    timezone: str = "UTC"
    walkways: tuple[Walkway, ...] = ()
    barriers: tuple[Barrier, ...] = ()
    speeds_mps: Mapping[str, float] = field(default_factory=lambda: DEFAULT_SPEEDS_MPS)
    # Accuracy given to a phone fix that reports none (never 0: that would overstate cover).
    default_accuracy_m: float = DEFAULT_ACCURACY_M
    # A rostered, on-duty officer whose devices sent nothing for this long raises
    # a "device-silent" alert (None: no such alerts).
    silent_after_s: float | None = None
    # A device reporting during its officer's rostered shift puts them on duty.
    duty_from_devices: bool = False
    # Tags officers scan, and rounds of them (docs/tours.md).
    checkpoints: tuple[Checkpoint, ...] = ()
    tours: tuple[Tour, ...] = ()
    # How fast a scan's accuracy grows after it, m/s (docs/tours.md).
    scan_walk_mps: float = DEFAULT_SCAN_WALK_MPS

    def __post_init__(self) -> None:
        if self.stale_after_s <= 0:
            raise ValueError("stale_after_s must be > 0")
        if not self.default_accuracy_m > 0:
            raise ValueError("default_accuracy_m must be > 0")
        if not self.scan_walk_mps > 0:
            raise ValueError("scan_walk_mps must be > 0")
        if self.silent_after_s is not None and not self.silent_after_s > 0:
            raise ValueError("silent_after_s must be > 0")
        if "default" not in self.speeds_mps or any(
            not v > 0 for v in self.speeds_mps.values()
        ):
            raise ValueError("speeds_mps needs a 'default' and every speed > 0")
        seen: set[str] = set()
        for post in self.posts:
            if post.id in seen:
                raise ValueError(f"duplicate post id {post.id}")
            seen.add(post.id)
            rule_ids = [r.id for r in post.rules]
            if len(set(rule_ids)) != len(rule_ids):
                raise ValueError(f"post {post.id}: duplicate rule id")
            for rule in post.rules:
                if rule.when is not None and rule.when not in self.flags:
                    raise ValueError(f"rule {post.id}/{rule.id}: unknown flag {rule.when}")
                if rule.when_gate_open and not post.gate:
                    raise ValueError(f"rule {post.id}/{rule.id}: post has no gate")
                if rule.reach_s is not None and (post.at is None or not self.walkways):
                    raise ValueError(f"rule {post.id}/{rule.id}: reach_s needs a point post "
                                     "and walkways")

    def speed_for(self, capability: str | None) -> float:
        """Walking speed (m/s) for a rule naming ``capability``: its own or the default."""
        if capability is not None and capability in self.speeds_mps:
            return self.speeds_mps[capability]
        return self.speeds_mps["default"]

    def post(self, post_id: str) -> Post:
        """Return the post with this id; ``KeyError`` if there is none."""
        for post in self.posts:
            if post.id == post_id:
                return post
        raise KeyError(post_id)

    @property
    def gates(self) -> tuple[str, ...]:
        """Ids of the posts that have a gate, in file order."""
        return tuple(p.id for p in self.posts if p.gate)

    def rules(self) -> list[tuple[Post, Rule]]:
        """Every (post, rule) pair in file order: the engine's rule index order."""
        return [(post, rule) for post in self.posts for rule in post.rules]
