"""Commands for other tools' formats: `events import`, `site import-geojson`,
`site export-geojson` and `export` (GeoJSON, GPX, CSV). See docs/interop.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from coverwatch.cli.options import DataDirOption, DbOption
from coverwatch.clock import wall_clock_us
from coverwatch.errors import CoverwatchError, SiteFileError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["check_gpx_options", "events_app", "export", "register_site_commands"]

events_app = typer.Typer(help="Stored events.", no_args_is_help=True)

OfficerOption = Annotated[str | None, typer.Option(
    help="GPX: the officer of the file's one track (default: the track's <name>).")]
CapabilityOption = Annotated[list[str] | None, typer.Option(
    "--capability", help="GPX: a capability the track's officer has on duty (repeatable).")]
TrackDutyOption = Annotated[bool, typer.Option(
    "--track-duty/--no-track-duty",
    help="GPX: the officer is on duty for the span of each track (off: duty comes from "
         "other events).")]
WithEventsOption = Annotated[Path | None, typer.Option(
    "--with-events", help="GPX: events given alongside the track (JSONL, CSV or Parquet: duty, "
                          "gates, flags); the track then makes no duty of its own.")]


def check_gpx_options(file: Path, officer: str | None, capability: list[str] | None,
                      track_duty: bool, with_events: Path | None) -> None:
    """The GPX options make sense only for a .gpx file: say so rather than ignore them."""
    if file.suffix.lower() != ".gpx" and (officer or capability or not track_duty
                                          or with_events):
        raise _error(f"{file}: --officer, --capability, --no-track-duty and --with-events "
                     "apply to GPX files only (the other formats name officers, duty and "
                     "capabilities in their events)")


def _console(*, stderr: bool = False) -> Console:
    # Rich is imported when something is printed: not at the start of every command
    # (a replay loads this module for its GPX options).
    from rich.console import Console

    return Console(stderr=stderr)


def _escape(text: str) -> str:
    """Rich's markup escape, imported when needed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _error(message: str) -> typer.Exit:
    _console(stderr=True).print(f"[red]error[/red] {_escape(message)}", highlight=False,
                               soft_wrap=True, emoji=False)
    return typer.Exit(2)


def _fail(e: CoverwatchError) -> typer.Exit:
    if isinstance(e, SiteFileError):
        for problem in e.problems[:-1]:
            _console(stderr=True).print(f"[red]error[/red] {_escape(str(problem))}",
                                       highlight=False, soft_wrap=True, emoji=False)
        return _error(str(e.problems[-1]))
    return _error(str(e))




@events_app.command("import")
def events_import(
    file: Annotated[Path, typer.Argument(help="Events: .jsonl, .csv, .parquet or .gpx.")],
    site: Annotated[Path, typer.Option("--site", help="The site file (YAML).")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
    officer: OfficerOption = None,
    capability: CapabilityOption = None,
    track_duty: TrackDutyOption = True,
    with_events: WithEventsOption = None,
) -> None:
    """Store events from a file in the server's store, validated and idempotent like
    the live paths (importing twice stores each event once)."""
    from coverwatch.formats.gpx import GpxOptions
    from coverwatch.formats.sitefile import load_site
    from coverwatch.server.backfill import import_events
    from coverwatch.storage import open_store

    check_gpx_options(file, officer, capability, track_duty, with_events)
    try:
        site_model = load_site(site)
        from coverwatch.storage.private import private_dir

        private_dir(data_dir)
        store = open_store(db, data_dir)
        try:
            result = import_events(
                store, site_model, file, now_us=wall_clock_us(),
                gpx=GpxOptions(officer, tuple(capability or ()), track_duty, with_events))
        finally:
            store.close()
    except CoverwatchError as e:
        raise _fail(e) from None
    except OSError as e:
        raise _error(f"{e.filename or file}: {e.strerror or e}") from None
    _console().print(f"{file}: {result.read} events read, {result.stored} stored, "
                    f"{result.duplicates} already stored, {result.late} behind the live "
                    "horizon (history)", highlight=False)


def _origin(text: str | None) -> object:
    from coverwatch.domain.site import LatLon

    if text is None:
        return None
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise _error(f"--origin: expected LAT,LON in degrees, got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _error(f"--origin: {lat:g},{lon:g} is not a latitude,longitude")
    return LatLon(lat, lon)


def _write(out: Path | None, data: bytes) -> None:
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.write_bytes(data)


def site_import_geojson(
    file: Annotated[Path, typer.Argument(help="A GeoJSON FeatureCollection in lon/lat.")],
    out: Annotated[Path | None, typer.Option(help="The site file to write (default: stdout).")]
    = None,
    origin: Annotated[str | None, typer.Option(
        help="LAT,LON of site metre (0, 0); default: the file's, else the features' centre.")]
    = None,
    site_id: Annotated[str | None, typer.Option("--site-id", help="The site's id.")] = None,
) -> None:
    """Make a site file from GeoJSON drawn in QGIS or geojson.io (posts, walkways, barriers)."""
    from coverwatch.domain.site import LatLon
    from coverwatch.formats.geojson import site_from_geojson

    given = _origin(origin)
    assert given is None or isinstance(given, LatLon)
    try:
        data = file.read_bytes()
    except OSError as e:
        raise _error(f"{file}: {e.strerror or e}") from None
    try:
        source, site = site_from_geojson(data, str(file), origin=given,
                                         site_id=site_id or None)
    except SiteFileError as e:
        raise _fail(e) from None
    _write(out, source.encode())
    if out is not None:
        _console().print(f"wrote {out}: site {site.id}, {len(site.posts)} posts, "
                        f"{len(site.walkways)} walkways, {len(site.barriers)} barriers")


def site_export_geojson(
    site: Annotated[Path, typer.Argument(help="The site file (YAML).")],
    out: Annotated[Path | None, typer.Option(help="The GeoJSON to write (default: stdout).")]
    = None,
    origin: Annotated[str | None, typer.Option(
        help="LAT,LON to place a site that has no origin.")] = None,
) -> None:
    """Write the site as GeoJSON in lon/lat (opens in QGIS); the origin travels with it."""
    from coverwatch.domain.site import LatLon
    from coverwatch.formats.geojson import site_to_geojson
    from coverwatch.formats.sitefile import load_site_document

    given = _origin(origin)
    assert given is None or isinstance(given, LatLon)
    try:
        doc = load_site_document(site)
        collection = site_to_geojson(doc.source, doc.site, origin=given)
    except SiteFileError as e:
        raise _fail(e) from None
    except ValueError as e:
        raise _error(f"{site}: {e}") from None
    _write(out, orjson.dumps(collection, option=orjson.OPT_INDENT_2) + b"\n")


def export(
    since: Annotated[str, typer.Option(help="Start (ISO-8601 or epoch seconds), inclusive.")],
    until: Annotated[str, typer.Option(help="End (ISO-8601 or epoch seconds), exclusive.")],
    site: Annotated[Path, typer.Option("--site", help="The site file (YAML).")],
    format: Annotated[str, typer.Option(help="geojson, gpx or csv.")] = "geojson",
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Export officers' tracks, lapses and alerts of a time range (times in UTC)."""
    from coverwatch.domain.time import parse_time
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.reports.exports import ExportError, export_history
    from coverwatch.storage import open_store

    try:
        since_us, until_us = parse_time(since), parse_time(until)
    except ValueError as e:
        raise _error(f"--since/--until: {e}") from None
    try:
        doc = load_site_document(site)
        store = open_store(db, data_dir)
        try:
            data = export_history(store, doc.source, since_us, until_us, format)
        finally:
            store.close()
    except ExportError as e:
        raise _error(f"--{e.field}: {e}") from None
    except CoverwatchError as e:
        raise _fail(e) from None
    _write(out, data)


def register_site_commands(site_app: typer.Typer) -> None:
    site_app.command("import-geojson")(site_import_geojson)
    site_app.command("export-geojson")(site_export_geojson)
