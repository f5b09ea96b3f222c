"""The standalone verifier as one file, ``verify_pack.py``: its modules joined.

:mod:`coverwatch.evidence.standalone_proofs`, :mod:`.standalone_records`, then
:mod:`coverwatch.evidence.standalone`,
each without its module docstring, ``__all__`` and imports; their imports (standard
library and ``cryptography`` only) hoisted to the top, once each; the cross-module
imports removed and ``_proofs.name`` written as ``name``. The modules stay under the
project's 500-line bound; the examiner gets one file that runs with a plain Python and
``cryptography``. The same sources always give the same bytes, so a copy can be compared
with the one a coverwatch release builds (:func:`verifier_digest`).
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

__all__ = ["VERIFIER_NAME", "verifier_digest", "verifier_source"]

VERIFIER_NAME = "verify_pack.py"
_HERE = Path(__file__).resolve().parent
# Definitions before their use; the last is the verifier itself (its docstring the file's).
_PARTS = ("standalone_proofs.py", "standalone_records.py", "standalone.py")


def _split(source: str, name: str) -> tuple[str | None, list[str], str, set[str]]:
    """A module's docstring, its imports (each a statement's text, ``coverwatch``'s and
    ``__future__``'s left out), its other lines, and the names it defines at top level."""
    tree = ast.parse(source, filename=name)
    lines = source.splitlines()
    drop: set[int] = set()
    imports: list[str] = []
    defined: set[str] = set()
    doc = ast.get_docstring(tree, clean=False)
    for i, node in enumerate(tree.body):
        span = range(node.lineno - 1, int(node.end_lineno or node.lineno))
        if i == 0 and doc is not None and isinstance(node, ast.Expr):
            drop.update(span)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            drop.update(span)
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if not (module or "").startswith(("coverwatch", "__future__")):
                imports += [_import(node, a) for a in node.names]
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            drop.update(span)
        elif isinstance(node, ast.Try | ast.If) and not _is_main(node):
            raise ValueError(f"{name}:{node.lineno}: a top-level {type(node).__name__} "
                             "cannot be joined safely")
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(n.id for t in targets for n in ast.walk(t)
                           if isinstance(n, ast.Name))
    kept = "\n".join(line for n, line in enumerate(lines)
                     if n not in drop and not line.startswith("#!"))
    return doc, imports, re.sub(r"\n{3,}", "\n\n\n", kept).strip("\n"), defined


def _import(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """``module|name as alias`` of one imported name (``|name``: a plain ``import``)."""
    named = alias.name + (f" as {alias.asname}" if alias.asname else "")
    if isinstance(node, ast.ImportFrom):
        return f"{'.' * node.level}{node.module}|{named}"
    return f"|{named}"


def _import_lines(imports: set[str]) -> list[str]:
    """Plain imports first, then one ``from`` line per module, standard library before
    ``cryptography``."""
    plain = sorted(f"import {n}" for m, _, n in (i.partition("|") for i in imports) if not m)
    by_module: dict[str, list[str]] = {}
    for m, _, n in (i.partition("|") for i in imports):
        if m:
            by_module.setdefault(m, []).append(n)
    return plain + [f"from {m} import {', '.join(sorted(by_module[m]))}"
                    for m in sorted(by_module, key=lambda m: (m.startswith("cryptography"), m))]


def _is_main(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.dump(node.test)


def verifier_source() -> str:
    """The text of ``verify_pack.py``."""
    parts = [_split((_HERE / n).read_text(encoding="utf-8"), n) for n in _PARTS]
    seen: set[str] = set()
    for _, _, _, names in parts:
        clash = seen & (names - {"__all__"})
        if clash:
            raise ValueError(f"two verifier modules define {sorted(clash)}")
        seen |= names
    doc = parts[-1][0]
    bodies = [re.sub(r"\b_proofs\.", "", body) for _, _, body, _ in parts]
    if any(re.search(r"\b_proofs\b", body) for body in bodies):
        raise ValueError("a verifier module names _proofs other than as _proofs.<name>")
    hoisted = _import_lines({i for _, imports, _, _ in parts for i in imports})
    return "\n".join([
        "#!/usr/bin/env python3",
        f'"""{doc}"""',
        "",
        f"# Built by coverwatch from {' and '.join(_PARTS)}: edit those, not this file.",
        "from __future__ import annotations",
        "",
        *hoisted,
        "",
        "",
        *(line for body in bodies for line in (body, "", "")),
    ]).rstrip("\n") + "\n"


def verifier_digest() -> str:
    """SHA-256 (hex) of ``verify_pack.py``, to compare a copy with this release's."""
    return hashlib.sha256(verifier_source().encode()).hexdigest()
