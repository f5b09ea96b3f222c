"""Admission to a group commit: each field's accepted and refused values, and raw originals."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest

from coverwatch.formats.validation import InvalidEvents
from coverwatch.server.admission import MAX_DEPTH, admit


class Code(enum.IntEnum):
    ONE = 1


class Name(str):
    pass


def _row(**changes: Any) -> dict[str, Any]:
    row = {"kind": "fix", "t_us": 1_800_000_000_000_000, "officer": "O1", "x": 1.0,
           "y": 2.0, "accuracy": 5.0, "post": None, "flag": None, "on": None, "open": None,
           "capabilities": None, "raw": {"kind": "fix", "x": 1.0}}
    return row | changes


def _problem(row: dict[str, Any]) -> tuple[str | None, str] | None:
    try:
        admit([row], [])
    except InvalidEvents as e:
        (p,) = e.problems
        return p.field, p.message
    return None


@pytest.mark.parametrize(("field", "value", "refused"), [
    ("kind", "fix", None), ("kind", "scan", "kind"), ("kind", 1, "kind"),
    ("t_us", 0, None), ("t_us", Code.ONE, None), ("t_us", -(2**63 - 1), None),
    ("t_us", True, "t"), ("t_us", 1.0, "t"), ("t_us", 2**63, "t"), ("t_us", None, "t"),
    ("officer", Name("O2"), None), ("officer", None, None), ("officer", 7, "officer"),
    ("device", b"phone", "device"),
    ("x", 3, None), ("x", Code.ONE, None), ("x", None, None), ("x", -0.0, None),
    ("x", math.nan, "x"), ("y", math.inf, "y"), ("accuracy", True, "accuracy"),
    ("x", "1.0", "x"),
    ("on", True, None), ("open", False, None), ("on", 1, "on"), ("open", "yes", "open"),
    ("capabilities", ["armed"], None), ("capabilities", "armed,k9", None),
    ("capabilities", ("armed",), None), ("capabilities", [1], "capabilities"),
])
def test_each_field_is_admitted_or_named(field: str, value: Any, refused: str | None) -> None:
    found = _problem(_row(**{field: value}))
    assert (None if found is None else found[0]) == refused


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("raw", "kept"), [
    ({"kind": "fix", "x": 1.0, "tags": ["a", 1, None, True]}, True),
    ({"a": [[1]]}, True),
    ({"a": ({"b": 1},)}, True),
    (_nested(MAX_DEPTH), True),
    (_nested(MAX_DEPTH + 1), False),
    ({"a": [_nested(MAX_DEPTH - 1)]}, False),
    ({"big": "x" * (64 * 1024)}, False),
    ({"n": 2**64}, False),
    ({1: "not a text key"}, False),
    ({"b": b"bytes"}, False),
])
def test_an_original_that_cannot_be_kept_is_replaced_by_a_note(raw: Any, kept: bool) -> None:
    row = _row(raw=raw)
    assert _problem(row) is None
    assert (row["raw"] is raw) == kept
    if not kept:
        assert row["raw"]["not_kept"].startswith("the original was not kept: it ")
