"""The layout's rules, checked on the source: the pure core does no I/O and
imports only the standard library, numpy and itself; entrypoints never import
each other; the HTTP edge (``http/``) serves the entrypoints and imports none of
them; the running server knows nothing of HTTP; no import cycles between
packages; modules stay small."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "coverwatch"
CORE = {"domain", "engine", "planning"}
ENTRYPOINTS = {"api", "web", "cli"}
# The HTTP edge shared by api/ and web/ (access, limits, problem bodies): not an entrypoint.
EDGE = "http"
HTTP_LIBRARIES = {"fastapi", "starlette", "uvicorn", "h11", "httptools"}
# Modules of the package root that are not packages of their own.
ROOT_MODULES = {"errors", "settings", "bootstrap", "clock"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        found[".".join(["coverwatch", *parts])] = path
    return found


def _imports(path: Path, *, typing_blocks: bool = True, members: bool = False) -> set[str]:
    """Every module named in an import statement. ``typing_blocks``: count ``if
    TYPE_CHECKING:`` imports (they never run); ``members``: count ``from pkg import mod``
    as importing ``pkg.mod``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if not typing_blocks:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for n in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if members:
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()


def test_every_module_is_in_a_known_place() -> None:
    for name, path in MODULES.items():
        parts = name.split(".")
        if len(parts) == 2 and path.name != "__init__.py":
            assert parts[1] in ROOT_MODULES, f"{name}: modules live in a package, not the root"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in CORE))
def test_core_imports_only_stdlib_numpy_and_core(module: str) -> None:
    for name in _imports(MODULES[module]):
        top = name.split(".")[0]
        if top == "coverwatch":
            # errors.py is the exception tree: standard library only, shared by all.
            assert _package(name) in CORE | {"errors"}, f"{module} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top == "numpy", f"{module} imports {name}"
            assert top not in {"os", "socket", "subprocess", "time", "random"}, (
                f"{module} imports {name}: the core does no I/O and reads no clock"
            )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in ENTRYPOINTS))
def test_entrypoints_never_import_each_other(module: str) -> None:
    own = _package(module)
    for name in _imports(MODULES[module]):
        if name.startswith("coverwatch."):
            other = _package(name)
            assert other == own or other not in ENTRYPOINTS, f"{module} imports {name}"


def test_the_http_edge_is_a_package_of_its_own() -> None:
    assert f"coverwatch.{EDGE}" in MODULES
    assert EDGE not in ENTRYPOINTS and EDGE not in CORE
    for name in ("access", "limits", "problems"):
        assert f"coverwatch.{EDGE}.{name}" in MODULES
        assert f"coverwatch.server.{name}" not in MODULES, f"server.{name} belongs in http/"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) == EDGE))
def test_the_http_edge_never_imports_an_entrypoint(module: str) -> None:
    for name in _imports(MODULES[module]):
        if name.startswith("coverwatch."):
            assert _package(name) not in ENTRYPOINTS, f"{module} imports {name}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) == "server"))
def test_the_server_knows_nothing_of_http(module: str) -> None:
    for name in _imports(MODULES[module]):
        assert _package(name) != EDGE or not name.startswith("coverwatch."), (
            f"{module} imports {name}")
        assert name.split(".")[0] not in HTTP_LIBRARIES, f"{module} imports {name}"


def test_role_groups_are_defined_once() -> None:
    """``SUPERVISION`` (who may watch) lives beside the role checks, nowhere else."""
    defined = sorted(
        module for module, path in MODULES.items()
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(isinstance(t, ast.Name) and t.id == "SUPERVISION"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])))
    assert defined == [f"coverwatch.{EDGE}.access"]


# Public classes defined in more than one module, each a different thing named by the
# field's word (a tour's checkpoint, the bus's and the keeping's; a planned and a stored
# reach). Listed so that no new pair appears, as two EscalationLevel classes once did.
_SHARED_CLASS_NAMES = {"Checkpoint", "Reach"}


def test_each_public_class_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in where.items()
             if len(paths) > 1 and name not in _SHARED_CLASS_NAMES}
    assert not twice, f"public classes defined in more than one module: {twice}"


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        src = _package(module)
        for name in _imports(path):
            if name.startswith("coverwatch.") or name == "coverwatch":
                dst = _package(name)
                if dst and dst != src and src:
                    graph[src].add(dst)
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle between packages: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_site_versions_are_imported_from_storage() -> None:
    # SiteVersion, load_versions and save_versions live in storage/versions.py: a report
    # or an evidence pack reading them must not reach into the server for them.
    moved = {"SiteVersion", "load_versions", "save_versions"}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module != "coverwatch.storage.versions":
                names = {alias.name for alias in node.names} & moved
                assert not names, f"{module} imports {sorted(names)} from {node.module}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_is_for(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{module} has no docstring"


# Packages that must not reach up into the server: what they make (reports, evidence)
# is read by the CLI and by third parties without a running server.
NOT_UP = {"reports": {"server", "api", "web", "cli", "bootstrap"},
          "evidence": {"server", "api", "web", "cli", "bootstrap"},
          "storage": {"server", "api", "web", "cli", "bootstrap", "reports", "evidence"},
          "formats": {"server", "api", "web", "cli", "bootstrap", "storage"}}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in NOT_UP))
def test_no_upward_imports(module: str) -> None:
    for name in _imports(MODULES[module]):
        if name.startswith("coverwatch."):
            assert _package(name) not in NOT_UP[_package(module)], f"{module} imports {name}"


def _runtime_imports(path: Path) -> set[str]:
    """Modules imported when the code runs: deferred imports included, ``if
    TYPE_CHECKING:`` blocks not."""
    return {n for n in _imports(path, typing_blocks=False, members=True) if n in MODULES}


def test_no_import_cycles_between_modules() -> None:
    graph = {m: _runtime_imports(p) - {m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                # A package's __init__ importing its own modules is not a cycle back to it.
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle between modules: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in state:
            visit(node)


def _private_uses(path: Path) -> list[str]:
    """Private names reached from outside: ``x._name`` on a site unit, or on a store
    outside storage, and
    ``from pkg.mod import _name`` across packages."""
    own = _package(next(m for m, p in MODULES.items() if p == path))
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name) \
                and (node.value.id in {"svc", "unit", "services", "site_unit"}
                     or (node.value.id == "store" and own != "storage")):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.startswith("coverwatch.") and _package(node.module) != own:
            found += [f"line {node.lineno}: {node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_used_from_outside(module: str) -> None:
    assert not _private_uses(MODULES[module]), f"{module}: {_private_uses(MODULES[module])}"


def test_the_site_unit_has_no_untyped_fields() -> None:
    from dataclasses import fields

    from coverwatch.server.unit import SiteUnit

    untyped = [f.name for f in fields(SiteUnit) if "Any" in str(f.type).split("[")[0]]
    assert not untyped, f"SiteUnit fields typed Any: {untyped}"


# HTTP answers raised to end a request, not errors (errors.py says so).
HTTP_ANSWERS = {"coverwatch.http.problems.ProblemError", "coverwatch.http.limits.BodyTimeout",
                "coverwatch.http.limits.BodyTooLarge", "coverwatch.web.pages.LoginRequired",
                "coverwatch.web.pages.PageForbidden"}


def test_one_exception_tree() -> None:
    import importlib
    import inspect

    from coverwatch.errors import CoverwatchError

    outside = []
    for name in sorted(MODULES):
        if any(part.startswith("_") for part in name.split(".")):
            continue  # a private module's control flow never leaves its package
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) \
                    and obj.__module__ == name and not attr.startswith("_") \
                    and f"{name}.{attr}" not in HTTP_ANSWERS \
                    and not issubclass(obj, CoverwatchError):
                outside.append(f"{name}.{attr}")
    assert not outside, f"public exceptions outside the CoverwatchError tree: {outside}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_exports(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name)}
    assert "__all__" in names, f"{module} has no __all__"


# The adapters hear of happenings and act through narrow views (server/ports.py) and
# commands (server/commands.py); only the wiring point gives them what they see.
ADAPTERS = {"coverwatch.server.outbox", "coverwatch.server.incidentsend",
            "coverwatch.server.briefing", "coverwatch.server.tours", "coverwatch.server.gateway",
            "coverwatch.server.feed", "coverwatch.server.subscribers",
            "coverwatch.server.ports", "coverwatch.server.commands",
            "coverwatch.server.happenings"}
# Who may hold a SiteUnit: the handlers, the wiring (start-up, bootstrap, distributed
# mode's start and worker), the inputs that hand it to the handlers (MQTT, OwnTracks,
# dead letters), the watchdog and the views (routes, pages, the HTTP edge, alert views).
UNIT_HOLDERS_OUTSIDE_HANDLERS = {
    "coverwatch.bootstrap", "coverwatch.server.wiring", "coverwatch.server.cluster",
    "coverwatch.server.clusterworker", "coverwatch.server.mqtt", "coverwatch.server.owntracks",
    "coverwatch.server.deadletters", "coverwatch.server.watchdog",
    "coverwatch.server.shelves", "coverwatch.server.alertviews", "coverwatch.http.access"}
BOOK_MUTATORS = {"adopt", "restore", "on_alert", "on_lapse_ended", "acknowledge", "close",
                 "tick", "forget"}


def _handler(module: str) -> bool:
    return module.startswith("coverwatch.server.handlers")


def test_adapters_hold_no_unit_and_call_no_handler() -> None:
    for module in sorted(ADAPTERS):
        for name in _imports(MODULES[module]):  # if TYPE_CHECKING: blocks count too
            assert name != "coverwatch.server.unit", f"{module} imports the site unit"
            assert not _handler(name), f"{module} imports {name}: send a command instead"


def test_the_site_unit_is_held_by_handlers_wiring_and_views_only() -> None:
    for module, path in sorted(MODULES.items()):
        if "coverwatch.server.unit" not in _imports(path) or module == "coverwatch.server.unit":
            continue
        allowed = _handler(module) or module in UNIT_HOLDERS_OUTSIDE_HANDLERS \
            or _package(module) in ENTRYPOINTS
        assert allowed, f"{module} holds a SiteUnit: give it a view (server/ports.py)"


def _book_changes(path: Path) -> list[str]:
    """``x.book.<mutator>(…)``, ``x.book.policy = …`` and ``….escalated_level = …``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in BOOK_MUTATORS \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "book":
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Attribute) and (
                        t.attr == "escalated_level" or (
                            isinstance(t.value, ast.Attribute) and t.value.attr == "book")):
                    found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_only_handlers_change_the_alert_book() -> None:
    outside = {m: _book_changes(p) for m, p in MODULES.items()
               if _package(m) not in CORE and not _handler(m)}
    assert not {m: f for m, f in outside.items() if f}, \
        "the alert book changed outside server/handlers: " + str(
            {m: f for m, f in outside.items() if f})


def test_the_store_calls_nothing_back() -> None:
    """The store is handed data (rows, alert records), never a function to call inside
    a commit (an SOS alert is decided before its commit: domain/alarms.py)."""
    import inspect

    from coverwatch.storage.events import EventRepository

    params = inspect.signature(EventRepository.append_events).parameters
    assert "alerts_for" not in params
    assert not any("Callable" in str(p.annotation) for p in params.values())
