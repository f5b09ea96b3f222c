"""Pictures of a randomised patrol plan (adapter, matplotlib Agg).

``patrol-game.png`` sets the fixed-route plan beside the randomised one: per
target, the cover at the attacker's best moment and the attacker's expected
payoff there, with each plan's best payoff for the attacker as a line. The
day's own plan-check pictures (routes, response, cover per rule) come from
:mod:`coverwatch.reports.planpictures`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import Site
from coverwatch.reports.patrols import Randomised
from coverwatch.reports.planpictures import write_report

__all__ = ["plot_game", "write_game_report"]


def plot_game(path: Path, r: Randomised) -> None:
    """Cover and attacker payoff per target: fixed routes against randomised."""
    targets = r.spec.targets
    names = [t.id + (" *" if r.fixed[i] else "") for i, t in enumerate(targets)]
    x = np.arange(len(targets))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    w = 0.27
    left.bar(x - w, 100 * r.fixed_cover, w, color="tab:gray", label="fixed routes")
    left.bar(x, 100 * r.coverage, w, color="tab:blue", label="randomised (game)")
    if r.days:
        left.bar(x + w, 100 * r.sampled_cover, w, color="tab:cyan",
                 label=f"randomised ({r.days} sampled days)")
    left.set_ylabel("cover at the attacker's best moment (%)")
    left.set_ylim(0, 140)
    left.set_yticks(range(0, 101, 20))
    left.set_title("Cover per target")
    fixed_pay = [float(t.attacker(float(c))) for t, c in zip(targets, r.fixed_cover,
                                                               strict=True)]
    game_pay = [float(t.attacker(float(c))) for t, c in zip(targets, r.coverage, strict=True)]
    right.bar(x - w / 2, fixed_pay, w, color="tab:gray", label="fixed routes")
    right.bar(x + w / 2, game_pay, w, color="tab:blue", label="randomised (game)")
    right.axhline(r.fixed_payoff, color="tab:gray", ls="--", lw=1.2,
                  label=f"attacker's best, fixed: {r.fixed_payoff:.2f}")
    right.axhline(r.game_payoff, color="tab:blue", ls="--", lw=1.2,
                  label=f"attacker's best, randomised: {r.game_payoff:.2f}")
    right.axhline(0, color="black", lw=0.6)
    right.set_ylabel("attacker's expected payoff")
    right.set_title("What an attacker who watched the routine can expect")
    low = min(0.0, *fixed_pay, *game_pay)
    high = max(1.0, *fixed_pay, *game_pay)
    right.set_ylim(low - 0.1 * (high - low), high + 0.6 * (high - low))
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=20, ha="right", fontsize=9)
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.suptitle(f"Plan {r.day.plan.id}: randomised {', '.join(r.free)} "
                 "(* covered all shift by officers who keep their posts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_game_report(directory: Path, site: Site, r: Randomised,
                      background: PlanImage | None = None) -> list[Path]:
    """The day's plan-check report and pictures (over the site's plan image, as
    `plan check --report`), plus patrol-game.png and its section."""
    paths = write_report(directory, site, r.check, background=background)
    game_png = directory / "patrol-game.png"
    plot_game(game_png, r)
    report = paths[0]
    lines = ["", "## Randomised patrols", "",
             f"Randomised: {', '.join(r.free)}; keeping their posts or routes: "
             f"{', '.join(r.tied) or 'nobody'}.", "",
             f"Attacker's best expected payoff: fixed routes **{r.fixed_payoff:.2f}** "
             f"(at {r.fixed_target}), randomised **{r.game_payoff:.2f}** (at {r.game_target}, "
             "the game's solution)"
             + (f", {r.sampled_payoff:.2f} observed over {r.days} sampled days." if r.days
                else "."), "",
             "| Target | Value | Penalty | Fixed-route cover | Coverage (game) |",
             "|---|---:|---:|---:|---:|"]
    for i, t in enumerate(r.spec.targets):
        lines.append(f"| {t.id}{' (held)' if r.fixed[i] else ''} | {t.value:g} | "
                     f"{t.penalty:g} | {100 * r.fixed_cover[i]:.0f}% | "
                     f"{100 * r.coverage[i]:.0f}% |")
    lines += ["", f"![Fixed routes against randomised]({game_png.name})", ""]
    with report.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return [*paths, game_png]
