"""Options many commands share: where the store is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["DataDirOption", "DbOption"]

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL; default: SQLite in --data-dir.")
]
DataDirOption = Annotated[Path, typer.Option(help="Directory for the embedded database.")]
