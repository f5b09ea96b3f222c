"""The few Arrow compute kernels the event readers use, called without ``pyarrow.compute``.

Importing ``pyarrow.compute`` (or calling an Array method such as ``cast`` or
``take``, which imports it) generates a Python wrapper for each of several hundred
kernels: about 35 ms of every JSONL replay's start. The kernels themselves live in
``pyarrow._compute``; these call them by name with the same options as the
wrappers' defaults.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyarrow import _compute

__all__ = ["all_true", "cast", "dictionary_encode", "equal", "fill_null", "is_valid",
           "matches", "take"]  # fmt: skip

_call = _compute.call_function


def cast(arr: Any, to: pa.DataType, *, safe: bool = True) -> Any:
    """``pyarrow.compute.cast``."""
    options = _compute.CastOptions.safe(to) if safe else _compute.CastOptions.unsafe(to)
    return _call("cast", [arr], options)


def dictionary_encode(arr: Any) -> Any:
    """``pyarrow.compute.dictionary_encode`` (nulls stay null)."""
    return _call("dictionary_encode", [arr])


def all_true(arr: Any) -> bool:
    """``bool(pyarrow.compute.all(arr).as_py())``, the same default options."""
    return bool(_call("all", [arr]).as_py())


def matches(arr: Any, pattern: str) -> Any:
    """``pyarrow.compute.match_substring_regex``."""
    return _call("match_substring_regex", [arr], _compute.MatchSubstringOptions(pattern))


def equal(arr: Any, value: Any) -> Any:
    """``pyarrow.compute.equal`` against a scalar."""
    return _call("equal", [arr, pa.scalar(value, arr.type)])


def fill_null(arr: Any, value: Any) -> Any:
    """``pyarrow.compute.fill_null`` with a scalar."""
    return _call("coalesce", [arr, pa.scalar(value, arr.type)])


def is_valid(arr: Any) -> Any:
    """``pyarrow.compute.is_valid``."""
    return _call("is_valid", [arr])


def take(arr: Any, indices: Any) -> Any:
    """``pyarrow.compute.take``."""
    return _call("take", [arr, indices])
