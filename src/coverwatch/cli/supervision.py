"""Supervision record commands: `records daily` and `records time-in-area` (CSV or PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from coverwatch.cli.options import DataDirOption, DbOption, nothing_stored

if TYPE_CHECKING:
    from coverwatch.domain.site import Site
    from coverwatch.storage import Store
    from coverwatch.storage.versions import SiteVersion

__all__ = ["records_app"]

records_app = typer.Typer(help="Supervision records: daily activity, time in area.",
                          no_args_is_help=True)


def _open(db: str | None, data_dir: Path) -> tuple[Store, list[SiteVersion], Site]:
    from coverwatch.formats.sitefile import load_site_text_document
    from coverwatch.storage import open_store
    from coverwatch.storage.versions import load_versions

    store = open_store(db, data_dir)
    versions = load_versions(store)
    if not versions:
        store.close()
        Console(stderr=True).print(f"[red]error[/red] {escape(nothing_stored(db, data_dir))}",
                                   highlight=False)
        raise typer.Exit(2)
    site = load_site_text_document(versions[-1].source, "<stored site>").site
    return store, list(versions), site


def _write(out: Path, data: bytes) -> None:
    out.write_bytes(data)
    Console().print(f"wrote {out}", highlight=False)


@records_app.command("daily")
def daily(
    day: Annotated[str, typer.Option("--date", help="The day (YYYY-MM-DD, site time zone).")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .csv or .pdf.")],
    shift: Annotated[str | None, typer.Option(help="Only this shift, HH:MM-HH:MM local.")]
    = None,
    send: Annotated[str | None, typer.Option(
        help="Also send it as an attachment to this Apprise URL (e.g. mailto://…); run from "
             "cron to schedule it.")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """The daily activity report: duty, time on post, lapses and alerts with handling,
    orders acknowledgements missed or late, SOS and silent devices, supervisor actions."""
    from coverwatch.reports.supervision import daily_report
    from coverwatch.reports.supervision_out import records_csv, records_pdf

    store, versions, site = _open(db, data_dir)
    try:
        rep = daily_report(store, versions, site, day, shift)
    except ValueError as e:
        Console(stderr=True).print(f"[red]error[/red] --date/--shift: {escape(str(e))}",
                                   highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    title = f"Daily activity report: {rep.site}, {day}" + (f", shift {shift}" if shift else "")
    data = records_pdf(title, rep, rep.sections, rep.timezone) if out.suffix == ".pdf" \
        else records_csv(rep.sections)
    _write(out, data)
    if send is not None:
        import apprise

        sender = apprise.Apprise()
        if not sender.add(send) or not sender.notify(body=title, title=title,
                                                     attach=str(out.resolve())):
            Console(stderr=True).print("[red]error[/red] the report could not be sent")
            raise typer.Exit(1)
        Console().print("sent", highlight=False)


@records_app.command("time-in-area")
def time_in_area_cmd(
    since: Annotated[str, typer.Option(help="Start (ISO-8601).")],
    until: Annotated[str, typer.Option(help="End (ISO-8601).")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .csv or .pdf.")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Seconds each officer spent in each post's area over a range."""
    from coverwatch.domain.time import parse_time
    from coverwatch.reports.supervision import time_in_area
    from coverwatch.reports.supervision_out import records_csv, records_pdf

    try:
        lo, hi = parse_time(since), parse_time(until)
    except ValueError as e:
        Console(stderr=True).print(f"[red]error[/red] --since/--until: {escape(str(e))}",
                                   highlight=False)
        raise typer.Exit(2) from None
    store, _, site = _open(db, data_dir)
    try:
        rows = time_in_area(site, store, lo, hi)
    finally:
        store.close()
    sections = {"time in area": rows}
    data = records_pdf(f"Time in area: {site.id}", None, sections, site.timezone) \
        if out.suffix == ".pdf" else records_csv(sections)
    _write(out, data)
