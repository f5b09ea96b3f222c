"""The `coverwatch` command line: a thin Typer layer over the library.

Each command parses its arguments, calls one library function and renders the
result with Rich. Exit codes: 0 success, 2 invalid input (with the problems
printed), 1 anything unexpected.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coverwatch.cli.interop import (
    CapabilityOption,
    OfficerOption,
    TrackDutyOption,
    WithEventsOption,
    check_gpx_options,
)
from coverwatch.cli.lazygroup import LazyGroup
from coverwatch.cli.lightparams import install as _plain_params
from coverwatch.domain.alerts import format_duration
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.errors import CoverwatchError, SiteFileError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from coverwatch.cli.plainconsole import PlainConsole
    from coverwatch.engine import Evaluation, Lapse
    from coverwatch.formats.eventfiles import EventReader

__all__ = ["app", "main"]

_plain_params()  # plain values need no pydantic (a tenth of a second of every start)

app = typer.Typer(
    name="coverwatch",
    help="Keeps guarded posts covered: check sites, replay events, run the live server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyGroup,  # only the invoked command's module is imported and built
)

_PROGRESS_MIN_BYTES = 8 * 1024 * 1024


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"coverwatch {version('coverwatch')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("coverwatch (version unknown: not installed)")
        raise typer.Exit()


@app.callback()
def _deployment(
    site: Annotated[str | None, typer.Option(
        "--site", envvar="COVERWATCH_SITE",
        help="In a deployment of several sites: the id of the site the command's store "
             "options act on (e.g. coverwatch --site depot devices add …).")] = None,
    _version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version,
        help="Print coverwatch's version and exit.")] = False,
) -> None:
    if site:  # read by coverwatch.storage.open_store
        os.environ["COVERWATCH_SITE"] = site


@app.command("help")
def help_(
    ctx: typer.Context,
    command: Annotated[list[str] | None, typer.Argument(
        help="A command, e.g. `serve` or `devices add`.")] = None,
) -> None:
    """Show the help of coverwatch or of one of its commands."""
    from rich.console import Console
    from rich.markup import escape
    at: Any = ctx.find_root()
    cmd: Any = at.command
    for name in command or []:
        # Typer vendors its own click: walk groups by what they do, not by class.
        sub = cmd.get_command(at, name) if hasattr(cmd, "get_command") else None
        if sub is None:
            Console(stderr=True).print(f"[red]error[/red] no command {escape(name)!r}: "
                                       "see `coverwatch help`", highlight=False)
            raise typer.Exit(2)
        at = type(at)(sub, info_name=name, parent=at)
        cmd = sub
    typer.echo(cmd.get_help(at))


def _fail(console: Console, error: CoverwatchError) -> typer.Exit:
    from rich.markup import escape
    if isinstance(error, SiteFileError):
        for problem in error.problems:
            console.print(f"[red]error[/red] {escape(str(problem))}", highlight=False,
                          soft_wrap=True, emoji=False)  # else "file:100:" shows as an emoji
    else:
        console.print(f"[red]error[/red] {escape(str(error))}", highlight=False, soft_wrap=True,
                      emoji=False)
    return typer.Exit(2)


@app.command()
def check(
    sites: Annotated[list[Path], typer.Argument(help="The site file(s) (YAML).")],
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    db: Annotated[str | None, typer.Option(
        "--db", help="Check escalation targets against the users in this database.")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Check escalation targets against the users in this data directory.")] = None,
) -> None:
    """Validate site files. Exit 0 if valid (warnings printed), 2 with every problem
    otherwise; with --strict, warnings (e.g. vague or contradicting orders, no origin for
    phones, no escalation, an escalation target that reaches nobody with a contact) exit 2
    too."""
    from rich.console import Console
    from rich.markup import escape
    console = Console(stderr=True)
    status = 0
    unchecked: set[str] = set()  # people named as escalation targets, not looked up
    for site in sites:
        try:
            _check_one(console, site, strict, db, data_dir, unchecked)
        except typer.Exit as e:
            status = max(status, e.exit_code)
    if unchecked:  # once, however many files: only role and user targets name people
        console.print(f"[dim]note[/dim] escalation targets {escape(', '.join(sorted(unchecked)))}"
                      " were not checked against people: give --db or --data-dir",
                      highlight=False, soft_wrap=True)
    if status:
        raise typer.Exit(status)


def _check_one(console: Console, site: Path, strict: bool, db: str | None,
               data_dir: Path | None, unchecked: set[str]) -> None:
    """One site file of `check`; raises typer.Exit(2) on a problem. Adds to ``unchecked``
    the people it names as escalation targets when no store was given."""
    from rich.console import Console
    from rich.markup import escape

    from coverwatch.formats.sitefile import load_site_document

    try:
        doc = load_site_document(site)
    except SiteFileError as e:
        raise _fail(console, e) from None
    from coverwatch.reports.plans import check_walkways

    findings = check_walkways(doc.site)
    for finding in findings:
        colour = "red" if finding.level == "error" else "yellow"
        console.print(f"[{colour}]{finding.level}[/{colour}] {site}: walkways: "
                      f"{escape(finding.message)}", highlight=False, soft_wrap=True)
    if any(f.level == "error" for f in findings):
        raise typer.Exit(2)
    from coverwatch.formats.geojson import degree_findings
    from coverwatch.formats.orderdocs import lint_problems

    wording = [str(p) for p in lint_problems(doc)]
    wording += [f"{site}: {finding}" for finding in degree_findings(doc.site)]
    wording += [f"{site}: {p}" for p in _target_problems(doc, db, data_dir)]
    if db is None and data_dir is None:
        unchecked |= {t for policy in (doc.policy, doc.sos_policy) for level in policy.levels
                      for t in level.notify if "://" not in t}
    for problem in wording:
        console.print(f"[yellow]warning[/yellow] {escape(problem)}", highlight=False,
                      soft_wrap=True, emoji=False)
    if strict and (wording or findings):
        console.print(f"[red]error[/red] {site}: --strict: {len(wording) + len(findings)} "
                      "warning(s)", highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2)
    rules = sum(len(p.rules) for p in doc.site.posts)
    Console().print(
        f"[green]ok[/green] {site}: site {doc.site.id}, {len(doc.site.posts)} posts, {rules} rules",
        highlight=False,
    )


def _target_problems(doc: Any, db: str | None, data_dir: Path | None) -> list[Any]:
    """What keeps the site from seeing a phone or reaching a person: no origin, no
    escalation, and (if a store was named) escalation targets that reach nobody."""
    from coverwatch.domain.lint import lint_reach

    if db is None and data_dir is None:
        return lint_reach(doc.site, has_escalation=bool(doc.escalation), devices=None)
    from coverwatch.server.outbox import unreachable_targets
    from coverwatch.server.policies import policy_from
    from coverwatch.storage import open_store
    from coverwatch.storage.sites import key_for_site, site_store
    from coverwatch.storage.store import DB_FILENAME

    if db is None and data_dir is not None and not (data_dir / DB_FILENAME).exists():
        out: list[Any] = lint_reach(doc.site, has_escalation=bool(doc.escalation), devices=0)
        if doc.escalation:
            out.append(f"escalation targets: no database in {data_dir} (no users: nobody is "
                       "reached)")
        return out
    store = open_store(db, data_dir or Path("data"))
    try:
        at = site_store(store, key_for_site(store, doc.site.id, sole=True))
        out = list(lint_reach(doc.site, has_escalation=bool(doc.escalation),
                              devices=len(at.list_devices())))
        if doc.escalation:
            out += list(unreachable_targets(policy_from(doc), store))
        return out
    finally:
        store.close()


_SUMMARY = ("Post", "Rule", "Need", "Lapses", "Alerts", "Longest lapse", "Cover %")


def _summary_rows(result: Evaluation) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for st in result.stats:
        pct = st.cover_pct
        pct_text = "inactive" if pct is None else f"{pct:.1f}"
        longest = format_duration(st.longest_lapse_us / US_PER_S) if st.lapses else "-"
        rows.append((st.post, st.rule, str(st.need), str(st.lapses), str(st.alerts), longest,
                     pct_text))
    return rows


def _plain_summary(console: Console | PlainConsole, result: Evaluation, title: str) -> str | None:
    from coverwatch.cli.plaintable import plain_table

    right = [name not in ("Post", "Rule") for name in _SUMMARY]
    return plain_table(console, title, _SUMMARY, right, _summary_rows(result))


def _summary_table(result: Evaluation, title: str) -> Table:
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    table.add_column("Post")
    table.add_column("Rule")
    table.add_column("Need", justify="right")
    table.add_column("Lapses", justify="right")
    table.add_column("Alerts", justify="right")
    table.add_column("Longest lapse", justify="right")
    table.add_column("Cover %", justify="right")
    for st in result.stats:
        pct = st.cover_pct
        pct_text = "inactive" if pct is None else f"{pct:.1f}"
        alerts = f"[bold red]{st.alerts}[/bold red]" if st.alerts else "0"
        longest = format_duration(st.longest_lapse_us / US_PER_S) if st.lapses else "-"
        table.add_row(st.post, st.rule, str(st.need), str(st.lapses), alerts, longest, pct_text)
    return table


def _rich(*, stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _progress() -> Any:
    """A replay's progress bar on a terminal; off it none, and Rich not loaded."""
    from coverwatch.cli.plainconsole import plain_console

    if plain_console(stderr=True) is not None:  # Rich would find no terminal there
        return contextlib.nullcontext()
    err = _rich(stderr=True)
    if not err.is_terminal:
        return contextlib.nullcontext()
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]replay[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} / {task.total:,.0f} bytes"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command()
def replay(
    site: Annotated[Path | None, typer.Argument(help="The site file (YAML).")] = None,
    events: Annotated[Path | None, typer.Argument(
        help="Events: .jsonl, .csv, .parquet or .gpx.")] = None,
    pack: Annotated[Path | None, typer.Option(
        "--pack", help="Re-derive the lapses of an evidence pack from its own events, rule "
                       "versions and engine state, and compare them with its report.")] = None,
    json_out: Annotated[
        str | None,
        typer.Option("--json", help="Write one JSON object per lapse to a file, or - for stdout."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="End of the window (ISO-8601 or epoch seconds); default: last event."),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip malformed lines and report them.")
    ] = False,
    budget: Annotated[
        int, typer.Option(help="Events sorted whole in memory before streaming starts.")
    ] = 8_000_000,
    disorder_window_s: Annotated[
        float, typer.Option(help="Beyond the budget, how far out of order input may be (s).")
    ] = 60.0,
    officer: OfficerOption = None,
    capability: CapabilityOption = None,
    track_duty: TrackDutyOption = True,
    with_events: WithEventsOption = None,
) -> None:
    """Evaluate recorded events against a site's cover rules and summarise the lapses."""
    from coverwatch.cli.plainconsole import plain_console
    from coverwatch.formats.sitefile import load_site
    from coverwatch.reports.replay import lapse_lines, replay_file

    if pack is not None:
        if site is not None or events is not None:
            _rich(stderr=True).print("[red]error[/red] --pack takes no SITE or EVENTS: the "
                                       "pack holds its own", highlight=False)
            raise typer.Exit(2)
        from coverwatch.cli.evidence import replay_pack

        replay_pack(pack, json_out)
        return
    if site is None or events is None:
        _rich(stderr=True).print("[red]error[/red] replay needs SITE and EVENTS (or --pack "
                                   "PACK)", highlight=False)
        raise typer.Exit(2)
    check_gpx_options(events, officer, capability, track_duty, with_events)
    to_stdout = json_out == "-"
    # Rich is loaded only for what it must render (a terminal, markup, errors): its
    # import was a sixth of a replay's start beyond pyarrow's (cli/plainconsole.py).
    plain_out = plain_console(stderr=to_stdout)
    rich_out: list[Console] = []

    def say(text: str, markup: str | None = None, *, soft_wrap: bool = False) -> None:
        if plain_out is not None and plain_out.line(text, soft_wrap=soft_wrap):
            return
        if not rich_out:
            rich_out.append(_rich(stderr=to_stdout))
        rich_out[0].print(text if markup is None else markup, highlight=markup is None,
                          soft_wrap=soft_wrap)
    # The lapses are written as the replay hands them out, to a spool file first so
    # that a replay that fails writes nothing, and none is kept in memory: a long
    # replay's lapses were the part of its peak memory that grew with the file.
    spool = None if json_out is None else tempfile.TemporaryFile()  # noqa: SIM115
    alerted: list[Lapse] = []
    n_alerted = 0

    def take(lapses: list[Lapse]) -> None:
        nonlocal n_alerted
        if spool is not None:
            spool.write(lapse_lines(lapses))
        for lp in lapses:
            if lp.alert_at is not None:
                n_alerted += 1
                if len(alerted) < 10:
                    alerted.append(lp)

    try:
        site_model = load_site(site)
        until_us = None
        if until is not None:
            try:
                until_us = parse_time(until)
            except ValueError as e:
                _rich(stderr=True).print(f"[red]error[/red] --until: {e}", highlight=False)
                raise typer.Exit(2) from None
        with _progress() as progress:
            task = None if progress is None else progress.add_task("replay", total=None)

            def start(reader: EventReader) -> None:
                if progress is not None and task is not None:
                    big = reader.total_bytes >= _PROGRESS_MIN_BYTES
                    progress.update(task, total=reader.total_bytes, completed=0, visible=big)

            def tick(reader: EventReader) -> None:
                if progress is not None and task is not None:
                    progress.update(task, completed=reader.bytes_read)

            result, reader = replay_file(
                site_model, events, skip_bad=skip_bad, budget=budget,
                disorder_window_us=round(disorder_window_s * US_PER_S), until=until_us,
                on_start=start, on_progress=tick,
                gpx=_gpx_options(events, officer, capability, track_duty, with_events),
                on_lapses=take,
            )
    except CoverwatchError as e:
        raise _fail(_rich(stderr=True), e) from None
    except OSError as e:
        from rich.markup import escape

        where = escape(str(e.filename or events))
        _rich(stderr=True).print(f"[red]error[/red] {where}: {escape(e.strerror or str(e))}",
                                 highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None

    if reader.skipped:
        shown = ", ".join(str(n) for n in reader.skipped[:20])
        more = f" and {len(reader.skipped) - 20} more" if len(reader.skipped) > 20 else ""
        _rich(stderr=True).print(
            f"[yellow]skipped {len(reader.skipped)} bad line(s)[/yellow]: {shown}{more}",
            highlight=False,
        )
    if json_out is not None and spool is not None:
        out = sys.stdout.buffer if to_stdout else open(json_out, "wb")  # noqa: SIM115
        try:
            spool.seek(0)
            shutil.copyfileobj(spool, out)
            out.flush()
        except BrokenPipeError:
            if not to_stdout:
                raise
            # The reader stopped (`| head`): as Unix tools do, stop writing, and point
            # stdout at /dev/null so that the interpreter's last flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            spool.close()
            if not to_stdout:
                out.close()
    if result.start is None:
        say("no events to replay")
        return
    window = f"{format_time(result.start)} to {format_time(result.end or result.start)}"
    title = f"Cover of {site_model.name}, {window}"
    plain = None if plain_out is None else _plain_summary(plain_out, result, title)
    if plain is not None:  # off a terminal: the same text, without Rich's layout machinery
        plain_out.file.write(plain)  # type: ignore[union-attr]
    else:
        if not rich_out:
            rich_out.append(_rich(stderr=to_stdout))
        rich_out[0].print(_summary_table(result, title))
    for lp in alerted:
        end = "still open" if lp.end is None else f"until {format_time(lp.end)}"
        line = (f"{lp.post}/{lp.rule}: lapse from {format_time(lp.start)} {end}, "
                f"alerted at {format_time(lp.alert_at or 0)}, lowest cover {lp.min_cover}")
        say(f"ALERT {line}", f"[red]ALERT[/red] {line}", soft_wrap=True)
    if n_alerted > 10:
        say(f"... and {n_alerted - 10} more alerted lapses (see --json)")


def _gpx_options(
    events: Path, officer: str | None, capability: list[str] | None, track_duty: bool,
    with_events: Path | None,
) -> Any:
    # Only a GPX file needs them: gpxpy is not imported for other formats (start-up).
    if events.suffix.lower() != ".gpx":
        return None
    from coverwatch.formats.gpx import GpxOptions

    return GpxOptions(officer, tuple(capability or ()), track_duty, with_events)


def main() -> None:
    """Console-script entry point."""
    app()

