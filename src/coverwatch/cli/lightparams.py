"""Command-line values converted without pydantic when they are plain.

Typer 0.29 converts every parameter's value through a pydantic ``TypeAdapter``,
so each start imported pydantic and built adapters: about 0.1 s of CPU, a
sixth of a `coverwatch replay`'s start. Here a parameter whose type is ``str``,
``int``, ``float``, ``bool`` or ``Path`` (or a list of one) without parser,
bounds or path checks takes a plain conversion when the value is unambiguous
(a decimal number, a path text); anything else, and any value the plain
conversion doubts or refuses, goes to typer's own conversion, so results and
error messages are typer's. tests/unit/test_cli_lightparams.py compares both
on every parameter of every command.

It hooks typer's private ``typer.core.build_runtime_param`` (typer is pinned);
if that is missing, nothing is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import typer.core

__all__ = ["install", "light_value"]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NO = object()  # the plain conversion declines: typer's decides
_SCALARS = (str, int, float, bool, Path)


def _plain_info(info: Any) -> bool:
    """No parser, bounds or path type of its own: the conversion is the type's alone."""
    return (
        getattr(info, "parser", None) is None
        and getattr(info, "min", None) is None
        and getattr(info, "max", None) is None
        and not getattr(info, "clamp", False)
        and getattr(info, "path_type", None) is None
    )


def _leaf(annotation: Any, value: Any) -> Any:
    """``value`` as ``annotation``, or _NO when typer's conversion must decide."""
    if annotation is str:
        return value if type(value) is str else _NO
    if annotation is bool:
        return value if type(value) is bool else _NO
    if annotation is int:
        if type(value) is int:
            return value
        return int(value) if type(value) is str and _INT.fullmatch(value) else _NO
    if annotation is float:
        if type(value) is float:
            return value
        return float(value) if type(value) is str and _FLOAT.fullmatch(value) else _NO
    if annotation is Path:
        # Only texts that Path keeps as they are, so that typer's path checks below
        # name the value as given.
        if type(value) is str and value and value == str(Path(value)):
            return Path(value)
        return _NO
    return _NO


def light_value(annotation: Any, value: Any) -> Any:
    """The plain conversion of one parameter's value (not None), or _NO.

    A ``Path`` still needs typer's path checks (:func:`_path_checked`)."""
    if get_origin(annotation) is list:
        if not isinstance(value, (list, tuple)):
            return _NO
        (item_type,) = get_args(annotation)
        out = [_leaf(item_type, v) for v in value]
        return _NO if any(v is _NO for v in out) else out
    return _leaf(annotation, value)


def _handles(descriptor: Any) -> bool:
    ann = descriptor.annotation
    if descriptor.file_annotation is not None or not _plain_info(descriptor.parameter_info):
        return False
    if get_origin(ann) is list:
        args = get_args(ann)
        return len(args) == 1 and args[0] in _SCALARS
    return ann in _SCALARS


try:
    from typer._coercion import RuntimeParam, TypeDescriptor
    from typer._param_types import coerce_cli_path

    _typers = typer.core.build_runtime_param  # type: ignore[attr-defined]
except (ImportError, AttributeError):  # another typer: leave its conversion alone
    RuntimeParam = None  # type: ignore[assignment,misc]

if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _LightParam(RuntimeParam):
        descriptor: TypeDescriptor
        _theirs: list[Any] = field(default_factory=list, compare=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            got = light_value(self.annotation, value)
            if got is not _NO:
                try:
                    return _path_checked(self, got, param, ctx)
                except Exception:  # typer's conversion below gives its own message
                    pass
            if not self._theirs:
                self._theirs.append(_typers(self.descriptor))
            return self._theirs[0]._coerce_value(value, param=param, ctx=ctx)

    def _path_checked(light: _LightParam, got: Any, param: Any, ctx: Any) -> Any:
        ann: Any = light.annotation
        info = light.parameter_info
        if ann is Path:
            return coerce_cli_path(got, info, path_type=Path, param=param, ctx=ctx)
        if get_origin(ann) is list and get_args(ann)[0] is Path:
            return [coerce_cli_path(p, info, path_type=Path, param=param, ctx=ctx) for p in got]
        return got

    def _build(descriptor: Any) -> Any:
        if _handles(descriptor):
            return _LightParam(
                annotation=descriptor.annotation,
                parameter_info=descriptor.parameter_info,
                descriptor=descriptor,
            )
        return _typers(descriptor)


def install() -> None:
    """Route typer's parameter conversion through the plain one (idempotent)."""
    if RuntimeParam is not None:
        typer.core.build_runtime_param = _build  # type: ignore[attr-defined]
