"""Line-aware YAML reading for the site file and the files built like it (plans,
tours, patrol games).

The YAML is composed into nodes (not constructed into Python objects) so every
value keeps its line and column. :class:`_NodeChecker` reads mappings, lists
and scalars from those nodes and collects a :class:`~coverwatch.errors.Problem`
for each thing wrong, naming file, line, column (1-based) and the field path,
e.g. ``posts[0].rules[1].within_m``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats.yamldepth import MAX_YAML_DEPTH, check_aliases, check_depth

__all__ = [
    "ID_PATTERN",
    "_BOOL",
    "_FLOAT",
    "_INT",
    "_MERGE",
    "_NULL",
    "_STR",
    "_NodeChecker",
    "_child",
    "_compose",
    "_describe",
    "_hint",
    "_item",
    "_short",
]

#: Ids of sites, posts, rules, flags and capabilities: lowercase letters,
#: digits and '-', starting and ending with a letter or digit, at most 64 long.
ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_INT64_MAX = 2**63 - 1


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


class _NodeChecker:
    """Reads a composed node tree, collecting problems (with file, line, column
    and field path) and where each value was written.

    The site loader's readers of each section, and the plan and tour loaders,
    build on these methods.
    """

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []
        self.locations: dict[str, tuple[int, int]] = {}
        self.constructor = SafeConstructor()

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

    def unique_id(self, fields: dict[str, tuple[Node, Node]], field_path: str,
                  seen: dict[str, Node], what: str) -> str | None:
        """An item's ``id``, checked and unique among ``seen`` (ids to their nodes)."""
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

