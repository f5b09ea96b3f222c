"""The site-file loader: reads a site's YAML file and validates it into a
:class:`coverwatch.domain.Site`.

This is an adapter around the pure core. The YAML is composed into nodes (not
constructed into Python objects) so every value keeps its line and column, and
the whole file is checked before anything is built: a :class:`SiteFileError`
lists every problem found, each with file, line, column (1-based) and the
field path, e.g. ``posts[0].rules[1].within_m``. The schema is documented in
docs/site-file.md.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coverwatch.domain.lint import LintConfig
from coverwatch.domain.site import DEFAULT_SPEEDS_MPS, Barrier, LatLon, Post, Rule, Site, Walkway
from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats.yamldepth import MAX_YAML_DEPTH, check_aliases, check_depth, paused_gc

__all__ = [
    "ID_PATTERN",
    "EscalationLevel",
    "SiteDocument",
    "load_site",
    "load_site_document",
    "load_site_text",
    "load_site_text_document",
]

#: Ids of sites, posts, rules, flags and capabilities: lowercase letters,
#: digits and '-', starting and ending with a letter or digit, at most 64 long.
ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")

DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_TIMEZONE = "UTC"

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_INT64_MAX = 2**63 - 1

# Known keys of each mapping, and which of them are required.
_SITE_KEYS = {
    "site": True,
    "name": False,
    "origin": False,
    "stale_after_s": False,
    "timezone": False,
    "flags": False,
    "posts": True,
    "escalation": False,
    "default_accuracy_m": False,
    "silent_after_s": False,
    "duty_from_devices": False,
    "walkways": False,
    "barriers": False,
    "speeds_mps": False,
    "lint": False,
    "checkpoints": False,  # read by formats/tourfile.py
    "tours": False,
    "scan_walk_mps": False,  # read by formats/tourfile.py
}
_ORIGIN_KEYS = {"lat": True, "lon": True}
_POST_KEYS = {
    "id": True,
    "name": False,
    "at": False,
    "area": False,
    "gate": False,
    "orders": False,
    "rules": False,
}
_RULE_KEYS = {
    "id": True,
    "need": True,
    "capability": False,
    "within_m": False,  # required unless reach_s is given; checked in rule()
    "reach_s": False,
    "release_m": False,
    "grace_s": False,
    "when": False,
    "when_gate_open": False,
}
_LEVEL_KEYS = {"after_s": True, "notify": True}
# The mapping form of `escalation`: lapses and other alerts, and device alarms.
_POLICY_KEYS = {"default": False, "sos": False}
_LINT_KEYS = {"vague_phrases": False, "extra_vague_phrases": False}
_WALKWAY_KEYS = {"id": True, "points": True, "one_way": False}
_BARRIER_KEYS = {"id": True, "at": False, "points": False}

# Where a key that is unknown at one level belongs, for a better hint.
_IN_A_POST = "is a post field: put it in an entry under 'posts'"
_IN_A_RULE = "is a rule field: put it in an entry under the post's 'rules'"
_ELSEWHERE_SITE = {key: _IN_A_POST for key in _POST_KEYS} | {
    key: _IN_A_RULE for key in _RULE_KEYS if key not in _POST_KEYS
}
_ELSEWHERE_POST = {key: _IN_A_RULE for key in _RULE_KEYS if key not in _POST_KEYS} | {
    key: "is a site field: put it at the top level of the file"
    for key in _SITE_KEYS
    if key not in _POST_KEYS
}
_ELSEWHERE_RULE = {key: _IN_A_POST for key in _POST_KEYS if key not in _RULE_KEYS}


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """One escalation step: after ``after_s`` seconds of an unacknowledged
    alert, notify these targets (role names, user names or URLs, as written)."""

    after_s: float
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SiteDocument:
    """A loaded site file: the site, the sections the domain ``Site`` does not
    carry, the source text and where each field was written.

    ``locations`` maps a field path (``posts[0].orders``) to the 1-based
    (line, column) of its value, for tools that report on a valid file.
    ``lint`` is the wording lint's configuration (the ``lint`` section).
    """

    site: Site
    escalation: tuple[EscalationLevel, ...]
    source: str
    path: str
    # Escalation of device alarms (sos, fall); None: every default level at once.
    sos_escalation: tuple[EscalationLevel, ...] | None = None
    locations: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    lint: LintConfig = field(default_factory=LintConfig)


def load_site(path: str | os.PathLike[str]) -> Site:
    """Load and validate a site file. Raises :class:`SiteFileError`."""
    return load_site_document(path).site


def load_site_text(text: str, path: str = "<string>") -> Site:
    """Load and validate a site from YAML text; ``path`` names it in problems."""
    return load_site_text_document(text, path).site


def load_site_document(path: str | os.PathLike[str]) -> SiteDocument:
    """Load a site file with its escalation section and source. Raises
    :class:`SiteFileError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SiteFileError([Problem(name, None, None, None, "no such file")]) from None
    except IsADirectoryError:
        message = "is a directory, not a file"
        raise SiteFileError([Problem(name, None, None, None, message)]) from None
    except OSError as e:
        message = f"cannot read the file: {e.strerror or e}"
        raise SiteFileError([Problem(name, None, None, None, message)]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        # Count characters, not bytes, so the column matches an editor's.
        prefix = before[before.rfind(b"\n") + 1 :]
        column = len(prefix.decode("utf-8-sig", errors="replace")) + 1
        message = f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        raise SiteFileError([Problem(name, line, column, None, message)]) from None
    return load_site_text_document(text, name)


def load_site_text_document(text: str, path: str = "<string>") -> SiteDocument:
    """Like :func:`load_site_document`, from YAML text."""
    with paused_gc():
        return _Checker(path, text).run()


def _compose(path: str, text: str) -> Node | None:
    """Parse YAML into a node tree, turning parser errors into problems."""
    aliased = check_depth(path, text)
    if getattr(yaml, "__with_libyaml__", False):
        # libyaml is ~10x faster on a large site; any error is re-parsed by the pure
        # Python parser below, whose messages and marks the problems are built from.
        try:
            return check_aliases(path, text, yaml.compose(text, Loader=yaml.CSafeLoader), aliased)
        except yaml.YAMLError:
            pass
    try:
        return check_aliases(path, text, yaml.compose(text, Loader=yaml.SafeLoader), aliased)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        # PyYAML words some problems as a continuation of the context ("but found ...").
        problem = (e.problem or e.context or "invalid YAML").removeprefix("but ")
        message = f"YAML syntax error: {problem}"
        if e.context and e.problem and e.context_mark is not None:
            where = f"line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
            message += f" ({e.context} at {where})"
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise SiteFileError([Problem(path, line, column, None, message)]) from None
    except yaml.reader.ReaderError as e:
        before = text[: e.position]
        line = before.count("\n") + 1
        column = e.position - (before.rfind("\n") + 1) + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        message = f"YAML syntax error: character U+{char:04X} is not allowed in YAML"
        raise SiteFileError([Problem(path, line, column, None, message)]) from None
    except yaml.YAMLError as e:
        raise SiteFileError([Problem(path, None, None, None, f"YAML error: {e}")]) from None
    except RecursionError:  # a syntax error deeper than Python's stack; the scan missed it
        message = f"mappings and lists nest more than {MAX_YAML_DEPTH} levels deep"
        raise SiteFileError([Problem(path, None, None, None, message)]) from None


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _child(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _item(base: str, index: int) -> str:
    return f"{base}[{index}]"


def _describe(node: Node) -> str:
    """Name what a node holds, for 'expected X, got Y' messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    shown = repr(node.value) if len(node.value) <= 40 else repr(node.value[:37] + "...")
    return {
        _STR: f"the text {shown}",
        _INT: f"the integer {node.value}",
        _FLOAT: f"the number {node.value}",
        _BOOL: f"the boolean {node.value}",
        _NULL: "nothing (null)",
        "tag:yaml.org,2002:timestamp": f"the date {node.value}",
    }.get(node.tag, f"{shown} (YAML tag {node.tag})")


def _hint(key: str, known: list[str], elsewhere: Mapping[str, str] | None = None) -> str:
    """A did-you-mean for a misspelt key, or where a misplaced key belongs."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if elsewhere and key in elsewhere:
        return f"; {key!r} {elsewhere[key]}"
    return ""


class _Checker:
    """Walks the node tree once, collecting problems and values."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []
        self.locations: dict[str, tuple[int, int]] = {}
        self.constructor = SafeConstructor()
        self.lint_config = LintConfig()
        self.sos_levels: tuple[EscalationLevel, ...] | None = None

    # -- reporting ---------------------------------------------------------

    def problem(self, node: Node | None, field_path: str | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        self.problems.append(Problem(self.path, line, column, field_path or None, message))

    def expected(self, node: Node, field_path: str, what: str) -> None:
        self.problem(node, field_path, f"expected {what}, got {_describe(node)}")

    def where(self, node: Node) -> str:
        return f"line {node.start_mark.line + 1}"

    # -- structure ---------------------------------------------------------

    def mapping(
        self,
        node: Node,
        field_path: str,
        known: dict[str, bool],
        elsewhere: Mapping[str, str] | None = None,
    ) -> dict[str, tuple[Node, Node]] | None:
        """Check a mapping's keys: unknown, duplicated and missing ones."""
        if not isinstance(node, MappingNode):
            self.expected(node, field_path, "a mapping")
            return None
        if field_path:
            self.note(node, field_path)
        found: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, field_path)
            if key is None:
                continue
            if key in found:
                first = found[key][0]
                self.problem(
                    key_node,
                    _child(field_path, key),
                    f"duplicate key {key!r} (first given on {self.where(first)})",
                )
                continue
            if key not in known:
                self.problem(
                    key_node,
                    _child(field_path, key),
                    f"unknown key {key!r}{_hint(key, list(known), elsewhere)}",
                )
                continue
            found[key] = (key_node, value_node)
        for key, required in known.items():
            if required and key not in found:
                self.problem(node, _child(field_path, key), f"missing required key {key!r}")
        return found

    def key(self, key_node: Node, field_path: str) -> str | None:
        """A mapping key's text, if it is a plain string."""
        if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
            self.problem(key_node, field_path,
                         "YAML merge keys ('<<') are not supported; write the keys out, "
                         "or use an alias for a whole item")
            return None
        if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
            self.problem(key_node, field_path or None,
                         f"a key must be text, got {_describe(key_node)} (quote it)")
            return None
        return str(key_node.value)

    def sequence(self, node: Node, field_path: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.expected(node, field_path, "a list")
            return None
        self.note(node, field_path)
        return list(node.value)

    # -- scalars -----------------------------------------------------------

    def note(self, node: Node, field_path: str) -> None:
        self.locations[field_path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def string(self, node: Node, field_path: str, *, empty_ok: bool = True) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            self.expected(node, field_path, "text")
            return None
        value = str(node.value)
        if not empty_ok and not value.strip():
            self.problem(node, field_path, "must not be empty")
            return None
        self.note(node, field_path)
        return value

    def ident(self, node: Node, field_path: str) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _INT:
            self.problem(node, field_path,
                         f"expected an id (text), got the integer {node.value}; quote it")
            return None
        value = self.string(node, field_path)
        if value is None:
            return None
        if not ID_PATTERN.fullmatch(value):
            self.problem(
                node,
                field_path,
                f"bad id {value!r}: use lowercase letters, digits and '-', starting and "
                "ending with a letter or digit, at most 64 characters",
            )
            return None
        return value

    def boolean(self, node: Node, field_path: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.expected(node, field_path, "true or false")
            return None
        self.note(node, field_path)
        return bool(self.constructor.construct_yaml_bool(node))

    def number(
        self,
        node: Node,
        field_path: str,
        *,
        minimum: float | None = None,
        above: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """A finite number (integer or decimal), optionally bounded."""
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _FLOAT):
            self.expected(node, field_path, "a number")
            return None
        value = self.scalar(node, field_path)
        if value is None:
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            self.problem(node, field_path, f"must be a finite number, got {_short(node.value)}")
            return None
        if minimum is not None and number < minimum:
            self.problem(node, field_path, f"must be >= {minimum:g}, got {_short(node.value)}")
            return None
        if above is not None and number <= above:
            self.problem(node, field_path, f"must be > {above:g}, got {_short(node.value)}")
            return None
        if maximum is not None and number > maximum:
            self.problem(node, field_path, f"must be <= {maximum:g}, got {_short(node.value)}")
            return None
        self.note(node, field_path)
        return number

    def integer(self, node: Node, field_path: str, *, minimum: int) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.expected(node, field_path, "a whole number")
            return None
        value = self.scalar(node, field_path)
        if value is None:
            return None
        number = int(value)
        if abs(number) > _INT64_MAX:
            self.problem(node, field_path,
                         f"must be at most {_INT64_MAX}, got {_short(node.value)}")
            return None
        if number < minimum:
            self.problem(node, field_path, f"must be >= {minimum}, got {_short(node.value)}")
            return None
        self.note(node, field_path)
        return number

    def scalar(self, node: ScalarNode, field_path: str) -> Any:
        construct: Callable[[ScalarNode], Any] = (
            self.constructor.construct_yaml_int
            if node.tag == _INT
            else self.constructor.construct_yaml_float
        )
        try:
            return construct(node)
        except (ConstructorError, ValueError):
            self.problem(node, field_path, f"cannot read {node.value!r} as a number")
            return None

    def point(self, node: Node, field_path: str) -> tuple[float, float] | None:
        items = self.sequence(node, field_path)
        if items is None:
            return None
        if len(items) != 2:
            self.problem(node, field_path,
                         f"a point is [x, y] in metres, got {len(items)} value(s)")
            return None
        x = self.number(items[0], _item(field_path, 0))
        y = self.number(items[1], _item(field_path, 1))
        if x is None or y is None:
            return None
        self.note(node, field_path)
        return (x, y)

    # -- sections ----------------------------------------------------------

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
        return SiteDocument(
            site=site,
            escalation=escalation,
            source=self.text,
            path=self.path,
            sos_escalation=self.sos_levels,
            locations=MappingProxyType(dict(self.locations)),
            lint=self.lint_config,
        )

    def site(self, root: Node) -> tuple[Site | None, tuple[EscalationLevel, ...]]:
        fields = self.mapping(root, "", _SITE_KEYS, _ELSEWHERE_SITE)
        if fields is None:
            return None, ()
        site_id = self.ident(fields["site"][1], "site") if "site" in fields else None
        name: str | None = site_id
        if "name" in fields:
            name = self.string(fields["name"][1], "name", empty_ok=False)
        origin = self.origin(fields["origin"][1]) if "origin" in fields else None
        stale = DEFAULT_STALE_AFTER_S
        if "stale_after_s" in fields:
            stale = self.number(fields["stale_after_s"][1], "stale_after_s", above=0) or stale
        timezone = DEFAULT_TIMEZONE
        if "timezone" in fields:
            timezone = self.timezone(fields["timezone"][1]) or timezone
        flags = self.flags(fields["flags"][1]) if "flags" in fields else {}
        posts = self.posts(fields["posts"][1], flags) if "posts" in fields else None
        escalation: tuple[EscalationLevel, ...] = ()
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
        from coverwatch.formats.tourfile import read_checkpoints, read_scan_walk, read_tours

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

    def rule(
        self,
        node: Node,
        field_path: str,
        flags: dict[str, bool],
        gate: bool,
        seen: dict[str, Node],
        at_point: bool = True,
    ) -> Rule | None:
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

    def unique_id(self, fields: dict[str, tuple[Node, Node]], field_path: str,
                  seen: dict[str, Node], what: str) -> str | None:
        if "id" not in fields:
            return None
        id_node = fields["id"][1]
        value = self.ident(id_node, _child(field_path, "id"))
        if value is not None and value in seen:
            self.problem(id_node, _child(field_path, "id"),
                         f"duplicate {what} id {value!r} (first used on "
                         f"{self.where(seen[value])})")
            return None
        if value is not None:
            seen[value] = id_node
        return value

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

    def escalation_section(self, node: Node) -> tuple[EscalationLevel, ...]:
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

    def escalation(self, node: Node, where: str = "escalation") -> tuple[EscalationLevel, ...]:
        items = self.sequence(node, where)
        if items is None:
            return ()
        levels: list[EscalationLevel] = []
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
                levels.append(EscalationLevel(after_s=after, notify=notify))
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
        return tuple(t.strip() for t in targets if t is not None)


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
