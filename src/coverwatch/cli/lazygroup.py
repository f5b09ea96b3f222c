"""The `coverwatch` command group, whose sub-commands are loaded when first asked for.

Typer builds a click command from every function's signature, and the command
modules import much of the library: building all of them took 0.3-0.8 s of every
start. Here a start imports and builds only the module of the command it runs;
the group's help, `coverwatch help` and a mistyped name (for the suggestions)
load them all.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

__all__ = ["LAZY_COMMANDS", "LazyGroup", "load_commands"]


def _server(app: typer.Typer) -> None:
    from coverwatch.cli.interop import register_site_commands
    from coverwatch.cli.server import register, site_app

    import_module("coverwatch.cli.evidence")  # it puts `audit verify/anchor/head/keys` on audit
    if not any(c.name == "import-geojson" for c in site_app.registered_commands):
        register_site_commands(site_app)  # once: site_app is the module's own
    register(app)


def _interop(app: typer.Typer) -> None:
    from coverwatch.cli.interop import events_app, export

    app.command()(export)
    app.add_typer(events_app, name="events")


def _evidence(app: typer.Typer) -> None:
    import_module("coverwatch.cli.evidence").register_evidence(app)


def _plan(app: typer.Typer) -> None:
    app.add_typer(import_module("coverwatch.cli.plan").plan_app, name="plan")


def _roster(app: typer.Typer) -> None:
    from coverwatch.cli.roster import qualifications_app, roster_app

    app.add_typer(roster_app, name="roster")
    app.add_typer(qualifications_app, name="qualifications")


def _orders(app: typer.Typer) -> None:
    app.command()(import_module("coverwatch.cli.orders").orders)


# Each command, in the order the help lists them, and what mounts it (with the others
# of its module). tests/e2e/test_cli.py checks that this names every command mounted.
LAZY_COMMANDS: dict[str, Callable[[typer.Typer], None]] = {
    "serve": _server, "demo": _server, "export": _interop, "orders": _orders,
    "db": _server, "audit": _server, "users": _server, "devices": _server, "site": _server,
    "mqtt": _server, "events": _interop, "evidence": _evidence, "retention": _evidence,
    "records": _evidence, "plan": _plan, "roster": _roster, "qualifications": _roster,
}  # fmt: skip

# Built click commands, per mount function (a process builds each at most once).
_built: dict[Callable[[typer.Typer], None], dict[str, Any]] = {}


def load_commands(mount: Callable[[typer.Typer], None]) -> dict[str, Any]:
    """The click commands that ``mount`` puts on a Typer, built once."""
    if mount not in _built:
        holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        mount(holder)
        _built[mount] = dict(typer.main.get_group(holder).commands)
    return _built[mount]


class LazyGroup(TyperGroup):
    """A Typer group that builds a sub-command the first time it is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            for name, command in load_commands(LAZY_COMMANDS[cmd_name]).items():
                self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in LAZY_COMMANDS:
            for name in self.list_commands(ctx):  # a typo: suggest from every command
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)
