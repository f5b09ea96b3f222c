"""`coverwatch plan ...`: check a roster and patrol plan before the shift.

`plan check SITE PLAN` simulates the plan into fixes, runs them through the
cover engine and the response analysis, prints the results and exits 1 if any
rule would alert (so plans can be checked in CI), 2 on invalid input.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coverwatch.domain.alerts import format_duration
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.errors import CoverwatchError, SiteFileError

__all__ = ["plan_app"]

plan_app = typer.Typer(
    help="Check a roster and patrol plan against a site's rules before the shift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(console: Console, error: CoverwatchError) -> typer.Exit:
    problems = error.problems if isinstance(error, SiteFileError) else None
    if problems:
        for problem in problems:
            console.print(f"[red]error[/red] {escape(str(problem))}", highlight=False,
                          soft_wrap=True)
    else:
        console.print(f"[red]error[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@plan_app.command("check")
def check(
    site: Annotated[Path, typer.Argument(help="The site file (YAML).")],
    plan: Annotated[Path, typer.Argument(help="The plan file (YAML).")],
    hz: Annotated[float, typer.Option(help="Simulated fixes per second.", min=0.001,
                                      max=100)] = 1.0,
    report: Annotated[
        Path | None, typer.Option(help="Write report.md and pictures into this directory.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the response sampling (default: the plan's).")
    ] = None,
    samples: Annotated[
        int, typer.Option(help="Attack moments sampled for the response analysis.", min=0)
    ] = 10_000,
    threshold_s: Annotated[
        float, typer.Option("--threshold-s", help="Response threshold (s) to report against.",
                            min=0)
    ] = 82.0,
    at: Annotated[
        str | None, typer.Option(help="Also show who could reach each post at this time.")
    ] = None,
) -> None:
    """Simulate PLAN on SITE: predicted lapses, cover, response times. Exit 1 on alerts."""
    from coverwatch.formats.planfile import load_plan
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.reports.plans import check_plan, fmt_seconds

    err = Console(stderr=True)
    out = Console()
    try:
        document = load_site_document(site)
        site_model = document.site
        plan_model = load_plan(plan, site_model)
        at_us: int | None = None
        if at is not None:
            try:
                at_us = parse_time(at)
            except ValueError as e:
                err.print(f"[red]error[/red] --at: {escape(str(e))}", highlight=False)
                raise typer.Exit(2) from None
            if not plan_model.start <= at_us <= plan_model.end:
                err.print(f"[red]error[/red] --at: {at} is outside the plan's shift "
                          f"({format_time(plan_model.start)} to {format_time(plan_model.end)})",
                          highlight=False)
                raise typer.Exit(2)
        result = check_plan(site_model, plan_model, hz=hz, samples=samples, seed=seed,
                            threshold_s=threshold_s)
    except CoverwatchError as e:
        raise _fail(err, e) from None

    window = f"{format_time(plan_model.start)} to {format_time(plan_model.end)}"
    table = Table(title=f"Plan {plan_model.id} on {site_model.name}, {window}",
                  title_justify="left")
    for name, justify in (("Post", "left"), ("Rule", "left"), ("Need", "right"),
                          ("Lapses", "right"), ("Alerts", "right"),
                          ("Longest gap", "right"), ("Cover %", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for st in result.evaluation.stats:
        pct = st.cover_pct
        pct_text = "inactive" if pct is None else f"{pct:.1f}"
        alerts = f"[bold red]{st.alerts}[/bold red]" if st.alerts else "0"
        longest = format_duration(st.longest_lapse_us / US_PER_S) if st.lapses else "-"
        table.add_row(st.post, st.rule, str(st.need), str(st.lapses), alerts, longest, pct_text)
    out.print(table)

    if result.arrivals:
        rt = Table(title=f"Response along walkways ({result.arrivals[0].samples} random "
                         f"attack moments)", title_justify="left")
        for name in ("Post", "Who", "Median", "p90", "Worst", f"≤ {threshold_s:g} s",
                     "≤ rule's reach_s"):
            rt.add_column(name, justify="left" if name in ("Post", "Who") else "right")
        for a in result.arrivals:
            who = f"{_ordinal(a.k)} {a.capability or 'officer'}"
            share = f"{100 * a.under_threshold:.1f}%"
            if a.under_threshold < 1.0:
                share = f"[bold red]{share}[/bold red]"
            within = "-"
            if a.reach_s is not None and a.under_reach is not None:
                within = f"{100 * a.under_reach:.1f}% of {a.reach_s:g} s"
                if a.under_reach < 1.0:
                    within = f"[bold red]{within}[/bold red]"
            rt.add_row(a.post, who, fmt_seconds(a.median_s), fmt_seconds(a.p90_s),
                       fmt_seconds(a.worst_s), share, within)
        out.print(rt)

    if at_us is not None and result.field is not None:
        from coverwatch.planning.response import reach_at

        at_table = Table(title=f"Who could reach each post at {format_time(at_us)}",
                         title_justify="left")
        at_table.add_column("Post")
        at_table.add_column("Officers, fastest first (travel time)")
        for reach in reach_at(site_model, plan_model, result.sim, result.field, at_us):
            shown = ", ".join(f"{o} {fmt_seconds(s)}" for o, s in reach.officers[:8]
                              if math.isfinite(s))
            at_table.add_row(reach.post, shown or "nobody")
        out.print(at_table)

    if report is not None:
        from coverwatch.reports.planpictures import write_report

        paths = write_report(report, site_model, result, threshold_s=threshold_s,
                             background=document.background)
        out.print(f"report: {', '.join(str(p) for p in paths)}", highlight=False)

    n_alerts = result.alerts
    if n_alerts:
        out.print(f"[bold red]FLAGGED[/bold red]: {n_alerts} alert(s) predicted; "
                  "this plan would leave rules unmet", highlight=False)
        raise typer.Exit(1)
    out.print("[green]ok[/green]: no alerts predicted", highlight=False)


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


@plan_app.command("randomise")
def randomise(
    site: Annotated[Path, typer.Argument(help="The site file (YAML).")],
    plan: Annotated[Path, typer.Argument(
        help="The plan file (YAML) with 'targets' (and optionally 'randomise').")],
    seed: Annotated[int, typer.Option(help="Seed of the sampled day.", min=0)] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write the sampled day as a plan file here.")
    ] = None,
    days: Annotated[
        int, typer.Option(help="Days sampled to estimate the attacker's payoff.", min=0,
                          max=1000)
    ] = 50,
    hz: Annotated[float, typer.Option(help="Simulated fixes per second.", min=0.01,
                                      max=10)] = 1.0,
    report: Annotated[
        Path | None, typer.Option(help="Write report.md and pictures of the day here.")
    ] = None,
) -> None:
    """Randomise the patrols of PLAN: officers no hard rule needs get an unpredictable
    day (a Stackelberg security game over the plan's targets), checked like `plan check`."""
    from coverwatch.cli.planrandom import print_randomised, randomise_files

    err = Console(stderr=True)
    out_console = Console()
    try:
        site_model, result, text, background = randomise_files(site, plan, seed=seed,
                                                               days=days, hz=hz)
    except CoverwatchError as e:
        raise _fail(err, e) from None
    except ValueError as e:  # PlanningError: the game cannot be set up for this plan
        err.print(f"[red]error[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    print_randomised(out_console, result)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        out_console.print(f"plan of the day: {out}", highlight=False)
    if report is not None:
        from coverwatch.reports.patrolpictures import write_game_report

        paths = write_game_report(report, site_model, result, background)
        out_console.print(f"report: {', '.join(str(p) for p in paths)}", highlight=False)
