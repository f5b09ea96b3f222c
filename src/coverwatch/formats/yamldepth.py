"""A depth limit for YAML, checked before any loader builds the document.

libyaml's composer recurses once per nesting level and crashes the process (a
segmentation fault, no exception) on some ten thousand levels of ``[``; the
pure-Python composer raises RecursionError. The scanner of either is
iterative, so :func:`check_depth` counts its tokens first and refuses a
document nested deeper than :data:`MAX_YAML_DEPTH` with the file, line,
column and field path where it happens. Every YAML input (site files, plan
files, ``/api/v1/site/apply``, ``/api/v1/plan/check``) goes through it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import yaml

from coverwatch.errors import Problem, SiteFileError

__all__ = ["MAX_YAML_DEPTH", "check_depth", "paused_gc"]

#: How deep mappings and lists may nest in a site or plan file (a real one: about 8).
MAX_YAML_DEPTH = 64
_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def check_depth(path: str, text: str) -> None:
    """Refuse YAML nested deeper than :data:`MAX_YAML_DEPTH`, before composing it.

    libyaml's composer recurses once per level and crashes the process (no
    exception) on some ten thousand levels; the pure-Python one raises
    RecursionError. The scanner is iterative, so its tokens are counted first.
    A syntax error is left for the loader to report.
    """
    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    # The field path so far: one entry per open collection, a key or an index.
    fields: list[str | int | None] = []
    want_key = False
    try:
        for token in yaml.scan(text, Loader=loader):
            if isinstance(token, _OPEN):
                seq = isinstance(token, yaml.BlockSequenceStartToken | yaml.FlowSequenceStartToken)
                fields.append(-1 if seq else None)
                if isinstance(token, yaml.FlowSequenceStartToken):
                    fields[-1] = 0
                if len(fields) > MAX_YAML_DEPTH:
                    mark = token.start_mark
                    raise SiteFileError([Problem(
                        path, mark.line + 1, mark.column + 1, _field_path(fields[:8]) or None,
                        f"mappings and lists nest more than {MAX_YAML_DEPTH} levels deep")])
            elif isinstance(token, _CLOSE):
                if fields:
                    fields.pop()
            elif isinstance(token, yaml.KeyToken):
                want_key = True
                continue
            elif isinstance(token, yaml.ScalarToken) and want_key and fields:
                fields[-1] = token.value
            elif isinstance(token, yaml.BlockEntryToken | yaml.FlowEntryToken) and fields \
                    and isinstance(fields[-1], int):
                fields[-1] += 1
            want_key = False
    except yaml.YAMLError:
        return


def _field_path(fields: list[str | int | None]) -> str:
    """The field path of the first open collections (enough to find the place)."""
    out = ""
    for f in fields:
        if isinstance(f, int):
            out += f"[{max(f, 0)}]"
        elif f is not None:
            out = f"{out}.{f}" if out else f
    return out


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large document is built.

    Each full collection walks every object alive, and building a document's
    nodes triggers collections in proportion to the nodes made: without the
    pause a 20 000-post site took quadratic time (22 s to compose, against 4).
    Reference counting still frees memory meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
