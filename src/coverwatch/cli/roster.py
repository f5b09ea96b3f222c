"""``coverwatch roster import FILE`` and ``coverwatch qualifications import FILE``:
load rosters and qualification records from CSV into the server's store, with
the same checks as the API (a shift whose officer lacks a qualification its
post needs is refused, with the reason; nothing is imported then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["qualifications_app", "roster_app"]

roster_app = typer.Typer(help="Rosters: shifts assigning officers to posts or patrols.")
qualifications_app = typer.Typer(help="Officers' qualifications (e.g. armed) with expiry dates.")

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: SQLite).")]
DataDirOption = Annotated[Path, typer.Option(help="Data directory of the embedded store.")]


def _fail(problems: list[str]) -> None:
    err = Console(stderr=True)
    for p in problems:
        err.print(f"[red]error[/red] {p}", highlight=False)
    raise typer.Exit(2)


@roster_app.command("import")
def roster_import(
    file: Path,
    site: Annotated[Path, typer.Option(help="The site file (posts and their rules).")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Import shifts from CSV: officer,post,start,end[,patrol]."""
    from coverwatch.domain.briefing import assignment_problems
    from coverwatch.errors import SiteFileError
    from coverwatch.formats.roster import BriefingInputError, parse_roster_csv
    from coverwatch.formats.sitefile import load_site
    from coverwatch.storage import open_store

    try:
        site_model = load_site(site)
        shifts = parse_roster_csv(file.read_text("utf-8"), site_model.timezone)
    except SiteFileError as e:
        _fail([str(p) for p in e.problems])
    except BriefingInputError as e:
        _fail([f"{file}: {p}" for p in e.problems])
    except UnicodeDecodeError as e:
        _fail([f"{file}: not UTF-8 (byte offset {e.start})"])
    except OSError as e:
        _fail([str(e)])
    from coverwatch.storage.private import private_dir

    private_dir(data_dir)
    store = open_store(db, data_dir)
    try:
        quals = store.list_qualifications()
        problems = [p for s in shifts for p in assignment_problems(site_model, s, quals)]
        if problems:
            _fail(problems)
        stored = store.add_shifts(shifts, actor="cli")
    finally:
        store.close()
    Console().print(f"{len(stored)} shifts imported")


@qualifications_app.command("import")
def qualifications_import(
    file: Path,
    timezone: Annotated[str, typer.Option(help="Zone of date-only expiries.")] = "UTC",
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Import records from CSV: officer,qualification,valid_until[,valid_from]."""
    from coverwatch.formats.roster import BriefingInputError, parse_qualifications_csv
    from coverwatch.storage import open_store

    try:
        records = parse_qualifications_csv(file.read_text("utf-8"), timezone)
    except BriefingInputError as e:
        _fail([f"{file}: {p}" for p in e.problems])
    except UnicodeDecodeError as e:
        _fail([f"{file}: not UTF-8 (byte offset {e.start})"])
    except OSError as e:
        _fail([str(e)])
    from coverwatch.storage.private import private_dir

    private_dir(data_dir)
    store = open_store(db, data_dir)
    try:
        store.set_qualifications(records, actor="cli")
    finally:
        store.close()
    Console().print(f"{len(records)} qualification records imported")
