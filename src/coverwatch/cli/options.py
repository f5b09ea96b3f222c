"""Options many commands share: where the store is, and what to say when nothing is there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["DataDirOption", "DbOption", "nothing_stored"]

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL; default: SQLite in --data-dir.")
]
DataDirOption = Annotated[Path, typer.Option(help="Directory for the embedded database.")]


def nothing_stored(db: str | None, data_dir: Path) -> str:
    """The error for a command that reads what a server stored, run before any server has
    stored a site there: what it needs and what to do next."""
    where = "the database" if db else f"{data_dir}/"
    option = "--db" if db else "--data-dir"
    return (f"no site is stored in {where} yet: this command reads what a coverwatch server "
            "recorded. Start one on your site first (`coverwatch serve --site SITE.yaml`, or "
            f"`coverwatch demo`), or give the {option} that your server uses.")
