"""`coverwatch plan randomise`'s work: read the site, the plan and its patrol
game, sample the day, and print the game's figures and the day's schedule."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time
from coverwatch.reports.patrols import Randomised

__all__ = ["print_randomised", "randomise_files"]


def randomise_files(site: Path, plan: Path, *, seed: int, days: int,
                    hz: float) -> tuple[Site, Randomised, str, PlanImage | None]:
    """The randomised plan of ``seed``, its plan file text and the site's plan image."""
    from coverwatch.formats.patrolfile import dump_day, load_game
    from coverwatch.formats.planfile import load_plan
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.reports.patrols import randomise_plan

    document = load_site_document(site)
    site_model = document.site
    plan_model = load_plan(plan, site_model)
    spec = load_game(plan, site_model, plan_model)
    result = randomise_plan(site_model, plan_model, spec, seed=seed, days=days, hz=hz)
    return (site_model, result, dump_day(result.day, site_model, plan_model, seed),
            document.background)


def print_randomised(out: Console, r: Randomised) -> None:
    """The targets' cover and payoffs, both plans' attacker payoff, the schedule."""
    table = Table(title="Patrol targets: cover at the attacker's best moment, and their payoff",
                  title_justify="left")
    for name in ("Target", "Value", "Penalty", "Fixed", "Game", "Sampled", "Att. fixed",
                 "Att. random"):
        table.add_column(name, justify="left" if name == "Target" else "right")
    for i, t in enumerate(r.spec.targets):
        held = "*" if r.fixed[i] else ""
        table.add_row(t.id + held, f"{t.value:g}", f"{t.penalty:g}",
                      f"{100 * r.fixed_cover[i]:.0f}%", f"{100 * r.coverage[i]:.0f}%",
                      f"{100 * r.sampled_cover[i]:.0f}%" if r.days else "-",
                      f"{float(t.attacker(float(r.fixed_cover[i]))):.2f}",
                      f"{float(t.attacker(float(r.coverage[i]))):.2f}")
    out.print(table)
    out.print("Fixed: the fixed-route plan's cover; Game: the solved coverage probability; "
              f"Sampled: share of {r.days} sampled days; Att.: the attacker's expected payoff "
              "there. *: covered all shift by officers who keep their posts or routes.",
              highlight=False)
    out.print(f"randomised: {', '.join(r.free)}; keeping their posts or routes: "
              f"{', '.join(r.tied) or 'nobody'}", highlight=False)
    out.print(f"attacker's best expected payoff: fixed routes [bold]{r.fixed_payoff:.2f}"
              f"[/bold] (at {r.fixed_target}); randomised [bold]{r.game_payoff:.2f}[/bold] "
              f"(at {r.game_target}, the game's solution)"
              + (f", {r.sampled_payoff:.2f} observed over {r.days} sampled days "
                 f"(at {r.sampled_target})" if r.days else ""), highlight=False)
    sched = Table(title=f"Plan of the day ({r.day.plan.id}): who goes where when",
                  title_justify="left")
    sched.add_column("From")
    for officer in r.day.slots:
        sched.add_column(officer)
    n = max((len(v) for v in r.day.slots.values()), default=0)
    for s in range(n):
        start = r.day.plan.start + round(s * r.day.slot_s * 1e6)
        sched.add_row(format_time(start)[11:16],
                      *(v[s] if s < len(v) else "" for v in r.day.slots.values()))
    out.print(sched)
    tries = "" if r.attempts == 1 else f" (after {r.attempts - 1} sampled day(s) that alerted)"
    out.print(f"[green]ok[/green]: plan check predicts no alerts for this day{tries}",
              highlight=False)
