"""The site file read as a whole: :class:`SiteDocument` (what a load returns)
and :class:`_SiteChecker`, which walks the top-level mapping and hands each
section to its reader (posts and rules, walkways, escalation, checkpoints and
tours), then builds the :class:`coverwatch.domain.site.Site`.

The whole file is checked before anything is built: a :class:`SiteFileError`
lists every problem found.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from coverwatch.domain.alerts import EscalationPolicy
from coverwatch.domain.lint import LintConfig
from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import DEFAULT_SPEEDS_MPS, Barrier, LatLon, Site, Walkway
from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats._siteescalation import (
    WrittenLevel,
    _EscalationReader,
    escalation_policy,
    sos_escalation_policy,
)
from coverwatch.formats._sitekeys import _ELSEWHERE_SITE, _LINT_KEYS, _ORIGIN_KEYS, _SITE_KEYS
from coverwatch.formats._siteplanimage import _PlanImageReader
from coverwatch.formats._siteposts import _PostReader
from coverwatch.formats._siteways import _WayReader
from coverwatch.formats._siteyaml import _NULL, _child, _compose, _hint, _item
from coverwatch.formats.tourfile import read_checkpoints, read_scan_walk, read_tours

__all__ = ["DEFAULT_STALE_AFTER_S", "DEFAULT_TIMEZONE", "SiteDocument", "_SiteChecker"]

DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True, slots=True)
class SiteDocument:
    """A loaded site file: the site, the sections the domain ``Site`` does not
    carry, the source text and where each field was written.

    ``locations`` maps a field path (``posts[0].orders``) to the 1-based
    (line, column) of its value, for tools that report on a valid file.
    ``lint`` is the wording lint's configuration (the ``lint`` section).
    """

    site: Site
    escalation: tuple[WrittenLevel, ...]
    source: str
    path: str
    # Escalation of device alarms (sos, fall); None: every default level at once.
    sos_escalation: tuple[WrittenLevel, ...] | None = None
    locations: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    lint: LintConfig = field(default_factory=LintConfig)
    # Built when the file is loaded (the checker refused any target they cannot take):
    # the domain's policy for lapses and other alerts (bare names given their
    # ``role:``/``user:`` prefix), and for device alarms (sos, fall): the
    # ``escalation.sos`` levels, or else every default level at once.
    policy: EscalationPolicy = field(init=False)
    sos_policy: EscalationPolicy = field(init=False)
    # The plan's background: an image placed by control points, map tiles.
    background: PlanImage | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", escalation_policy(self.escalation))
        object.__setattr__(self, "sos_policy",
                           sos_escalation_policy(self.escalation, self.sos_escalation))


class _SiteChecker(_PostReader, _WayReader, _EscalationReader, _PlanImageReader):
    """Walks the node tree once, collecting problems and values."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(path, text)
        self.lint_config = LintConfig()
        self.sos_levels = None
        self.plan_background: PlanImage | None = None

    def run(self) -> SiteDocument:
        root = _compose(self.path, self.text)
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL):
            raise SiteFileError([Problem(self.path, None, None, None,
                                         "the file is empty; a site file needs at least "
                                         "'site' and 'posts'")])
        site, escalation = self.site(root)
        self.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        if self.problems or site is None:
            raise SiteFileError(self.problems or [
                Problem(self.path, None, None, None, "invalid site file")
            ])
        try:
            return SiteDocument(
                site=site,
                escalation=escalation,
                source=self.text,
                path=self.path,
                sos_escalation=self.sos_levels,
                locations=MappingProxyType(dict(self.locations)),
                lint=self.lint_config,
                background=self.plan_background,
            )
        except ValueError as e:  # a policy the checker let through: still the file's problem
            raise SiteFileError([Problem(self.path, None, None, "escalation", str(e))]) from None

    def site(self, root: Node) -> tuple[Site | None, tuple[WrittenLevel, ...]]:
        fields = self.mapping(root, "", _SITE_KEYS, _ELSEWHERE_SITE)
        if fields is None:
            return None, ()
        site_id = self.ident(fields["site"][1], "site") if "site" in fields else None
        name: str | None = site_id
        if "name" in fields:
            name = self.string(fields["name"][1], "name", empty_ok=False)
        origin = self.origin(fields["origin"][1]) if "origin" in fields else None
        if "background" in fields:
            self.plan_background = self.background(fields["background"][1],
                                                   "origin" in fields)
        stale = DEFAULT_STALE_AFTER_S
        if "stale_after_s" in fields:
            stale = self.number(fields["stale_after_s"][1], "stale_after_s", above=0) or stale
        timezone = DEFAULT_TIMEZONE
        if "timezone" in fields:
            timezone = self.timezone(fields["timezone"][1]) or timezone
        flags = self.flags(fields["flags"][1]) if "flags" in fields else {}
        posts = self.posts(fields["posts"][1], flags) if "posts" in fields else None
        escalation: tuple[WrittenLevel, ...] = ()
        if "escalation" in fields:
            escalation = self.escalation_section(fields["escalation"][1])
        device_fields: dict[str, Any] = {}
        if "default_accuracy_m" in fields:
            value = self.number(fields["default_accuracy_m"][1], "default_accuracy_m", above=0)
            if value is not None:
                device_fields["default_accuracy_m"] = value
        if "silent_after_s" in fields:
            value = self.number(fields["silent_after_s"][1], "silent_after_s", above=0)
            if value is not None:
                device_fields["silent_after_s"] = value
        if "duty_from_devices" in fields:
            flag = self.boolean(fields["duty_from_devices"][1], "duty_from_devices")
            if flag is not None:
                device_fields["duty_from_devices"] = flag
        walkways: tuple[Walkway, ...] = ()
        if "walkways" in fields:
            walkways = self.walkways(fields["walkways"][1])
        barriers: tuple[Barrier, ...] = ()
        if "barriers" in fields:
            barriers = self.barriers(fields["barriers"][1])
        speeds = dict(DEFAULT_SPEEDS_MPS)
        if "speeds_mps" in fields:
            speeds |= self.speeds(fields["speeds_mps"][1])
        if "lint" in fields:
            self.lint_config = self.lint(fields["lint"][1])
        if posts is not None and not walkways:
            self.reach_without_walkways(fields["posts"][1], posts)
        device_fields |= read_scan_walk(self, fields)

        if "checkpoints" in fields:
            device_fields["checkpoints"] = read_checkpoints(self, fields["checkpoints"][1], posts)
        if "tours" in fields:
            device_fields["tours"] = read_tours(self, fields["tours"][1],
                                                device_fields.get("checkpoints", ()))
        if self.problems or site_id is None or name is None or posts is None:
            return None, escalation
        try:
            site = Site(
                id=site_id,
                name=name,
                posts=posts,
                stale_after_s=stale,
                flags=MappingProxyType(flags),
                origin=origin,
                timezone=timezone,
                walkways=walkways,
                barriers=barriers,
                speeds_mps=MappingProxyType(speeds),
                **device_fields,
            )
        except ValueError as e:
            # The checks above should make this unreachable; never a traceback.
            self.problem(root, None, str(e))
            return None, escalation
        return site, escalation

    def origin(self, node: Node) -> LatLon | None:
        fields = self.mapping(node, "origin", _ORIGIN_KEYS)
        if fields is None or "lat" not in fields or "lon" not in fields:
            return None
        lat = self.number(fields["lat"][1], "origin.lat", minimum=-90, maximum=90)
        lon = self.number(fields["lon"][1], "origin.lon", minimum=-180, maximum=180)
        if lat is None or lon is None:
            return None
        return LatLon(lat, lon)

    def timezone(self, node: Node) -> str | None:
        name = self.string(node, "timezone", empty_ok=False)
        if name is None:
            return None
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            known = sorted(zoneinfo.available_timezones())
            self.problem(node, "timezone",
                         f"unknown time zone {name!r}{_hint(name, known)} "
                         "(use an IANA name such as 'Europe/London')")
            return None
        return name

    def flags(self, node: Node) -> dict[str, bool]:
        if not isinstance(node, MappingNode):
            self.expected(node, "flags", "a mapping of flag names to true or false")
            return {}
        flags: dict[str, bool] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, "flags")
            if key is None:
                continue
            field_path = _child("flags", key)
            if key in first_seen:
                self.problem(key_node, field_path,
                             f"duplicate flag {key!r} (first given on "
                             f"{self.where(first_seen[key])})")
                continue
            first_seen[key] = key_node
            self.ident(key_node, field_path)
            # Declared even if invalid, so rules naming it do not get a second error.
            flags[key] = bool(self.boolean(value_node, field_path))
        return flags

    def lint(self, node: Node) -> LintConfig:
        """The wording lint's phrases: ``vague_phrases`` replaces the defaults,
        ``extra_vague_phrases`` adds to them."""
        fields = self.mapping(node, "lint", _LINT_KEYS)
        if fields is None:
            return LintConfig()
        phrases = LintConfig().vague_phrases
        if "vague_phrases" in fields:
            phrases = self.phrases(fields["vague_phrases"][1], "lint.vague_phrases")
        if "extra_vague_phrases" in fields:
            phrases += self.phrases(fields["extra_vague_phrases"][1],
                                    "lint.extra_vague_phrases")
        return LintConfig(vague_phrases=tuple(dict.fromkeys(phrases)))

    def phrases(self, node: Node, field_path: str) -> tuple[str, ...]:
        items = self.sequence(node, field_path)
        if items is None:
            return ()
        phrases = [self.string(item, _item(field_path, i), empty_ok=False)
                   for i, item in enumerate(items)]
        return tuple(" ".join(p.lower().split()) for p in phrases if p is not None)

