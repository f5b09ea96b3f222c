"""The browser's modules (web/static/js) keep the project's rule for modules (under 500
lines each), and every name one imports from another is one that module exports (a
split that forgets an export fails here, not only in a browser)."""

from __future__ import annotations

import re
from pathlib import Path

JS = Path(__file__).resolve().parents[2] / "src" / "coverwatch" / "web" / "static" / "js"
_EXPORT = re.compile(r"^export (?:async )?(?:function|class|const|let) (\$|\w+)", re.M)
_IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.]+)";', re.M)


def test_every_module_is_under_500_lines() -> None:
    sizes = {p.name: len(p.read_text("utf-8").splitlines()) for p in JS.glob("*.js")}
    assert sizes and "control.js" in sizes
    assert {name: n for name, n in sizes.items() if n >= 500} == {}


def test_every_imported_name_is_exported() -> None:
    exports = {p.name: set(_EXPORT.findall(p.read_text("utf-8"))) for p in JS.glob("*.js")}
    missing = []
    for p in JS.glob("*.js"):
        for names, module in _IMPORT.findall(p.read_text("utf-8")):
            for name in (n.strip() for n in names.split(",")):
                if name and name not in exports.get(module, set()):
                    missing.append(f"{p.name} imports {name} from {module}")
    assert missing == []
    assert "needingAction" in exports["controlalerts.js"]  # the check sees the split
