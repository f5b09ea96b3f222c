"""A depth limit for YAML, checked before any loader builds the document.

libyaml's composer recurses once per nesting level and crashes the process (a
segmentation fault, no exception) on some ten thousand levels of ``[``; the
pure-Python composer raises RecursionError. The scanner of either is
iterative, so :func:`check_depth` counts its tokens first and refuses a
document nested deeper than :data:`MAX_YAML_DEPTH` with the file, line,
column and field path where it happens. Every YAML input (site files, plan
files, ``/api/v1/site/apply``, ``/api/v1/plan/check``) goes through it.

Aliases are kept (a site may share one rule list between posts) but bounded:
the composer shares an anchored node between its aliases, and every reader
after it walks that node once per alias, so a few kilobytes of aliases to
aliases would expand to millions of nodes. :func:`check_aliases` counts the
nodes the aliases add, in one pass over the shared nodes, and refuses a
document whose aliases add more than :data:`MAX_ALIAS_NODES` (or more than
the document writes out, when that is larger), naming the alias where the
limit is crossed. An alias inside its own anchor is refused too.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coverwatch.errors import Problem, SiteFileError

__all__ = ["MAX_ALIAS_NODES", "MAX_YAML_DEPTH", "check_aliases", "check_depth", "paused_gc"]

#: How deep mappings and lists may nest in a site or plan file (a real one: about 8).
MAX_YAML_DEPTH = 64
#: How many nodes aliases may add to a document beyond those it writes out, when it
#: writes out fewer: a shared rule list on 500 posts adds about 10 000.
MAX_ALIAS_NODES = 50_000
_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def check_depth(path: str, text: str) -> bool:
    """Refuse YAML nested deeper than :data:`MAX_YAML_DEPTH`, before composing it;
    return whether the text holds an alias (or could not be scanned).

    libyaml's composer recurses once per level and crashes the process (no
    exception) on some ten thousand levels; the pure-Python one raises
    RecursionError. The scanner is iterative, so its tokens are counted first.
    A syntax error is left for the loader to report.
    """
    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    # The field path so far: one entry per open collection, a key or an index.
    fields: list[str | int | None] = []
    want_key = False
    aliased = False
    try:
        for token in yaml.scan(text, Loader=loader):
            if type(token) is yaml.AliasToken:
                aliased = True
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
        return True
    return aliased


def _field_path(fields: list[str | int | None]) -> str:
    """The field path of the first open collections (enough to find the place)."""
    out = ""
    for f in fields:
        if isinstance(f, int):
            out += f"[{max(f, 0)}]"
        elif f is not None:
            out = f"{out}.{f}" if out else f
    return out


def check_aliases(path: str, text: str, root: Node | None, aliased: bool = True) -> Node | None:
    """Return ``root`` if its aliases add at most :data:`MAX_ALIAS_NODES` nodes
    (or as many as the document writes out, if more); else raise SiteFileError.

    One pass over the composed nodes, each shared node sized once, so the
    check costs what the text costs however far the aliases would expand.
    ``aliased`` is :func:`check_depth`'s answer: without an alias, nothing to count.
    """
    if root is None or not aliased:
        return root
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    added = 0
    written = 0
    cyclic = False

    def size(node: Node) -> int:
        nonlocal added, written, cyclic
        key = id(node)
        if key in sizes:  # a second reference: an alias
            added += sizes[key]
            return sizes[key]
        if key in open_nodes:  # an alias inside its own anchor
            cyclic = True
            return 0
        open_nodes.add(key)
        n = 1
        if isinstance(node, MappingNode):
            for k, v in node.value:
                n += size(k) + size(v)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                n += size(item)
        open_nodes.discard(key)
        sizes[key] = n
        written += 1
        return n

    size(root)
    limit = max(MAX_ALIAS_NODES, written)
    if added <= limit and not cyclic:
        return root
    raise SiteFileError([_blame_alias(path, text, root, sizes, limit, written)])


def _blame_alias(path: str, text: str, root: Node, sizes: dict[int, int], limit: int,
                 written: int) -> Problem:
    """The problem at the alias where the added nodes first pass ``limit`` (or that
    sits inside its own anchor). The k-th second reference met in document order
    is the k-th alias token in the text, which gives its line and column."""
    seen: set[int] = set()
    open_nodes: set[int] = set()
    added = 0
    refs = 0

    def walk(node: Node, field: str) -> tuple[int, str, str] | None:
        nonlocal added, refs
        key = id(node)
        if key in seen or key in open_nodes:
            refs += 1
            if key in open_nodes:
                return refs, field, "this alias refers to a node that contains it"
            added += sizes[key]
            if added > limit:
                return refs, field, (
                    f"YAML aliases expand the document too far: up to here they add "
                    f"{added} nodes ({sizes[key]} at this alias) to the {written} written "
                    f"out, and at most {limit} may be added; write the repeated part out "
                    f"or use fewer aliases")
            return None
        open_nodes.add(key)
        found = None
        if isinstance(node, MappingNode):
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else "?"
                sub = f"{field}.{name}" if field else str(name)
                found = walk(k, field) or walk(v, sub)
                if found:
                    break
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                found = walk(item, f"{field}[{i}]")
                if found:
                    break
        open_nodes.discard(key)
        seen.add(key)
        return found

    found = walk(root, "")
    assert found is not None
    index, field, message = found
    line = column = None
    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    for token in yaml.scan(text, Loader=loader):
        if isinstance(token, yaml.AliasToken):
            index -= 1
            if index == 0:
                line, column = token.start_mark.line + 1, token.start_mark.column + 1
                break
    return Problem(path, line, column, field or None, message)


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
