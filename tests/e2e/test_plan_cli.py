"""`coverwatch plan check` on the fictional Harbour Yard example plans."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from coverwatch.cli.plan import plan_app

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard"
runner = CliRunner()
# Mounted as `coverwatch plan`, as the main CLI does.
app = typer.Typer()
app.add_typer(plan_app, name="plan")


def test_roving_plan_is_flagged(tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "plan", "check", str(YARD / "site.yaml"), str(YARD / "plan-roving.yaml"),
        "--samples", "2000", "--report", str(tmp_path), "--at", "2026-03-22T13:20:00Z"])
    assert result.exit_code == 1, result.output
    assert "FLAGGED" in result.output
    assert "armed-cover" in result.output
    assert "Who could reach each post" in result.output
    for name in ("report.md", "site-plan.png", "timeline.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "site-plan.png" in (tmp_path / "report.md").read_text()


def test_fixed_plan_passes() -> None:
    result = runner.invoke(app, [
        "plan", "check", str(YARD / "site.yaml"), str(YARD / "plan-fixed.yaml"),
        "--samples", "2000"])
    assert result.exit_code == 0, result.output
    assert "no alerts predicted" in result.output


def test_invalid_plan_exits_2_with_located_problems(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "plan: bad\n"
        "start: 2026-03-22T13:00:00Z\n"
        "hours: 1\n"
        "officers:\n"
        "  - id: a1\n"
        "    post: main-gat\n"
        "  - id: a2\n"
        "    patrol: {route: [main-gate, [1, 1]], sped_mps: 1}\n"
    )
    result = runner.invoke(app, ["plan", "check", str(YARD / "site.yaml"), str(plan)])
    assert result.exit_code == 2
    assert "plan.yaml:6:11: officers[0].post: unknown post 'main-gat'; did you mean " \
           "'main-gate'?" in result.output
    assert "officers[1].patrol.sped_mps: unknown key 'sped_mps'; did you mean 'speed_mps'?" \
        in result.output
    assert "officers[1].patrol.speed_mps: missing required key 'speed_mps'" in result.output
