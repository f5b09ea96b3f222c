"""`coverwatch plan randomise` on the fictional Harbour Yard: randomised days
never let a hard rule alert, and an attacker who watched the routine expects less."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from coverwatch.cli.plan import plan_app
from coverwatch.formats.patrolfile import dump_day, load_game
from coverwatch.formats.planfile import load_plan, load_plan_text
from coverwatch.formats.sitefile import load_site
from coverwatch.planning.patrolgame import resolve_offsets, sample_day, travel_times
from coverwatch.reports.patrols import _periods, _without, randomise_plan
from coverwatch.reports.plans import check_plan, response_field

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard"
runner = CliRunner()
app = typer.Typer()
app.add_typer(plan_app, name="plan")


def test_fifty_sampled_days_pass_the_plan_check_and_lower_the_attackers_payoff() -> None:
    site = load_site(YARD / "site.yaml")
    plan = load_plan(YARD / "plan-fixed.yaml", site)
    spec = load_game(YARD / "plan-fixed.yaml", site, plan)
    r = randomise_plan(site, plan, spec, seed=0, days=50)
    assert r.free == ["p2"]  # p1 keeps the store: its rule needs it
    assert r.game_payoff < r.fixed_payoff
    assert r.sampled_payoff < r.fixed_payoff
    free_cover = np.where(r.fixed, 0.0, r.coverage)
    field = response_field(site)
    base = resolve_offsets(plan, _periods(plan, field))
    p2 = next(o for o in base.officers if o.id == "p2")
    assert p2.patrol is not None
    travel = {"p2": travel_times(field, [t.at for t in spec.targets], p2.patrol.speed_mps,
                                 True)}
    routes = set()
    for seed in range(50):
        day = sample_day(base, spec, free_cover, ["p2"], travel, np.random.default_rng(seed))
        # Through the written plan file, as `plan check` reads it.
        text = dump_day(day, site, plan, seed)
        again = load_plan_text(text, site, f"day-{seed}.yaml")
        check = check_plan(site, again, samples=0, timeline=False)
        assert check.alerts == 0, (seed, [(s.rule, s.alerts) for s in check.evaluation.stats])
        routes.add(tuple(day.slots["p2"]))
    assert len(routes) > 40  # the days differ
    assert _without(base, {"p2"}).officers


def test_cli_prints_both_payoffs_and_writes_a_plan_that_passes(tmp_path: Path) -> None:
    out = tmp_path / "day.yaml"
    result = runner.invoke(app, [
        "plan", "randomise", str(YARD / "site.yaml"), str(YARD / "plan-fixed.yaml"),
        "--seed", "4", "--out", str(out), "--days", "10", "--report", str(tmp_path / "r")],
        env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "attacker's best expected payoff: fixed routes 8.00" in result.output
    assert "randomised 3.36" in result.output
    assert "who goes where when" in result.output
    check = runner.invoke(app, ["plan", "check", str(YARD / "site.yaml"), str(out),
                                "--samples", "100"])
    assert check.exit_code == 0, check.output
    assert (tmp_path / "r" / "patrol-game.png").stat().st_size > 0
    assert "Randomised patrols" in (tmp_path / "r" / "report.md").read_text()


def test_the_days_site_plan_picture_lies_over_the_sites_plan_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `plan check --report` (issue 21): the randomised day's report draws the
    site's plan image under its site-plan picture."""
    from coverwatch.reports import patrolpictures

    given = []
    real = patrolpictures.write_report

    def spy(*args: Any, **kwargs: Any) -> Any:
        given.append(kwargs.get("background"))
        return real(*args, **kwargs)

    monkeypatch.setattr(patrolpictures, "write_report", spy)
    result = runner.invoke(app, [
        "plan", "randomise", str(YARD / "site.yaml"), str(YARD / "plan-fixed.yaml"),
        "--seed", "4", "--days", "0", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert len(given) == 1 and given[0] is not None
    assert str(given[0].file).endswith("yard-plan.svg")


def test_cli_errors_name_the_problem(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "randomise", str(YARD / "site.yaml"),
                                 str(YARD / "plan-roving.yaml")])
    assert result.exit_code == 2
    assert "no 'targets'" in result.output
    bad = tmp_path / "plan.yaml"
    text = (YARD / "plan-fixed.yaml").read_text().replace(
        "  attack_s: 180", "  attack_s: 180\n  officers: [a1, p9]")
    bad.write_text(text)
    result = runner.invoke(app, ["plan", "randomise", str(YARD / "site.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "unknown officer 'p9'" in result.output and "randomise.officers[1]" in \
        result.output
    bad.write_text(text.replace("officers: [a1, p9]", "officers: [a1]"))
    result = runner.invoke(app, ["plan", "randomise", str(YARD / "site.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "'a1' holds a post" in result.output
    bad.write_text(text.replace("officers: [a1, p9]", "attack_s: 5"))
    result = runner.invoke(app, ["plan", "randomise", str(YARD / "site.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "duplicate key 'attack_s'" in result.output
    bad.write_text(text.replace("  attack_s: 180\n  officers: [a1, p9]", "  attack_s: 20"))
    result = runner.invoke(app, ["plan", "randomise", str(YARD / "site.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "longer than randomise.attack_s (20 s)" in result.output


def test_the_plan_of_the_day_prints_with_the_orders(tmp_path: Path) -> None:
    from coverwatch.cli import app as main_app

    day = tmp_path / "day.yaml"
    result = runner.invoke(app, [
        "plan", "randomise", str(YARD / "site.yaml"), str(YARD / "plan-fixed.yaml"),
        "--seed", "2", "--out", str(day), "--days", "0"])
    assert result.exit_code == 0, result.output
    printed = runner.invoke(main_app, ["orders", str(YARD / "site.yaml"), "--patrol-plan",
                                       str(day)])
    assert printed.exit_code == 0, printed.output
    assert "## Patrol plan of the day" in printed.output
    assert "| 2026-03-22T13:00:00Z | 2026-03-22T13:10:00Z | p2: " in printed.output
    page = tmp_path / "orders.html"
    printed = runner.invoke(main_app, ["orders", str(YARD / "site.yaml"), "--format", "html",
                                       "--patrol-plan", str(day), "--out", str(page)])
    assert printed.exit_code == 0, printed.output
    html = page.read_text()
    assert html.index("patrol-plan") < html.index("</main>")
    bad = runner.invoke(main_app, ["orders", str(YARD / "site.yaml"), "--patrol-plan",
                                   str(YARD / "plan-fixed.yaml")])
    assert bad.exit_code == 2
    assert "not a day plan" in bad.output
