"""The dashboard's planning page backend: check a pasted plan against the live site.

``POST /api/v1/plan/check`` takes a plan file's YAML text and the options of
``coverwatch plan check`` (hz, samples, seed, threshold_s), runs
:func:`coverwatch.reports.plans.check_plan` against the server's current site in a
worker thread, and answers with the same figures the CLI prints (per rule:
lapses, alerts, longest gap, cover %; the response-time table), a verdict in
words, and the two pictures of :mod:`coverwatch.reports.planpictures` as PNG data URLs;
when the plan has a patrol game (``targets``), the attacker's best expected payoff
against its fixed routes and against randomised patrols, with their picture.

An invalid plan is a 422 whose ``detail.problems`` name file, line, column and
field, as the CLI's errors do. Limits keep one request bounded: at most
:data:`MAX_SAMPLES` response samples, :data:`MAX_PLAN_FIXES` simulated fixes
and :data:`MAX_CONCURRENT_CHECKS` checks at once (429 beyond that).
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from coverwatch.domain.alerts import format_duration
from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.errors import CoverwatchError, Problem, SiteFileError
from coverwatch.http.access import Principal, require, site_unit
from coverwatch.http.problems import problems
from coverwatch.planning.simulate import Plan
from coverwatch.reports.plans import PlanCheck, check_plan, fmt_seconds
from coverwatch.server.unit import SiteUnit

__all__ = [
    "MAX_CONCURRENT_CHECKS",
    "MAX_PLAN_FIXES",
    "MAX_PLAN_TEXT",
    "MAX_SAMPLES",
    "PLAN_PATH",
    "PlanCheckBody",
    "check_plan_json",
    "router",
    "simulated_fixes",
    "verdict_text",
]

router = APIRouter()

#: Response-analysis samples one request may ask for.
MAX_SAMPLES = 20_000
#: Simulated fixes (officers × time steps) one request may cost: a 12-hour
#: plan of 60 officers at 1 Hz is 2.6 million.
MAX_PLAN_FIXES = 3_000_000
#: Characters of plan YAML accepted.
MAX_PLAN_TEXT = 500_000
#: Plan checks running at once; each holds a core for seconds.
MAX_CONCURRENT_CHECKS = 2
#: The file name problems are reported against (the text came from a form).
PLAN_PATH = "plan.yaml"

_slots = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
# pyplot keeps global state: one picture at a time.
_pictures = threading.Lock()


class PlanCheckBody(BaseModel):
    """The request: plan YAML and the options of `coverwatch plan check`."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=MAX_PLAN_TEXT)
    hz: float = Field(1.0, gt=0, le=10)
    samples: int = Field(10_000, ge=0, le=MAX_SAMPLES)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    threshold_s: float = Field(82.0, ge=0, le=86_400)


def simulated_fixes(plan: Plan, hz: float) -> int:
    """How many positions the simulation of ``plan`` at ``hz`` computes (as simulate() steps)."""
    step_us = max(1, round(US_PER_S / hz))
    steps = (plan.end - plan.start) // step_us + 1
    return int(steps) * len(plan.officers)


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"index": None, "path": p.path, "line": p.line, "column": p.column, "field": p.field,
            "message": p.message, "text": str(p)}


def _post_name(site: Site, post_id: str) -> str:
    try:
        return site.post(post_id).name
    except (KeyError, ValueError, CoverwatchError):
        return post_id


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def verdict_text(site: Site, check: PlanCheck) -> tuple[str, list[str]]:
    """The headline and one sentence per unmet rule, worst first.

    "Plan would leave Main Gate / armed-cover unmet: 12 alerts, longest gap 8 min 32 s".
    """
    hours = format_duration((check.plan.end - check.plan.start) / US_PER_S)
    unmet = sorted((st for st in check.evaluation.stats if st.alerts),
                   key=lambda st: (-st.alerts, -st.longest_lapse_us))
    if not unmet:
        return (f"Plan passes: no alerts predicted for any rule over the {hours} shift", [])
    lines = [
        f"{_post_name(site, st.post)} / {st.rule}: {_plural(st.alerts, 'alert')}, "
        f"longest gap {format_duration(st.longest_lapse_us / US_PER_S)}"
        for st in unmet
    ]
    head = f"Plan would leave {lines[0].replace(':', ' unmet:', 1)}"
    if len(unmet) > 1:
        head += f" (and {_plural(len(unmet) - 1, 'more rule')})"
    return head, lines


def _png_data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _pictures_json(site: Site, check: PlanCheck, threshold_s: float,
                   background: PlanImage | None = None) -> dict[str, str]:
    from coverwatch.reports.planpictures import plot_site_plan, plot_timeline

    with _pictures, tempfile.TemporaryDirectory(prefix="cw-plan-") as tmp:
        site_png = Path(tmp) / "site-plan.png"
        timeline_png = Path(tmp) / "timeline.png"
        plot_site_plan(site_png, site, check, threshold_s, background)
        plot_timeline(timeline_png, check)
        return {"site_plan": _png_data_url(site_png.read_bytes()),
                "timeline": _png_data_url(timeline_png.read_bytes())}


# Sampled days behind the patrol game's figures on the page (the CLI's --days is 50).
GAME_DAYS = 10


def _patrol_game_json(site: Site, plan: Plan, body: PlanCheckBody) -> dict[str, Any] | None:
    """The plan's patrol game, when it has ``targets``: fixed routes against randomised
    (the figures and picture of ``coverwatch plan randomise``), or why it cannot be played."""
    from coverwatch.formats.patrolfile import load_game_text
    from coverwatch.reports.patrolpictures import plot_game
    from coverwatch.reports.patrols import randomise_plan

    try:
        spec = load_game_text(body.plan, site, plan, PLAN_PATH)
    except SiteFileError as e:
        if not any(p.field == "targets" and "has no 'targets'" in p.message
                   for p in e.problems):
            return {"error": "; ".join(p.message for p in e.problems)}
        return None
    seed = plan.seed if body.seed is None else body.seed
    try:
        r = randomise_plan(site, plan, spec, seed=seed, days=GAME_DAYS, hz=body.hz)
    except CoverwatchError as e:
        return {"error": str(e)}
    with _pictures, tempfile.TemporaryDirectory(prefix="cw-game-") as tmp:
        png = Path(tmp) / "patrol-game.png"
        plot_game(png, r)
        picture = _png_data_url(png.read_bytes())
    return {"randomised": r.free, "fixed_payoff": r.fixed_payoff,
            "fixed_target": r.fixed_target, "game_payoff": r.game_payoff,
            "game_target": r.game_target, "sampled_payoff": r.sampled_payoff,
            "days": r.days, "seed": seed, "picture": picture}


def check_plan_json(site: Site, body: PlanCheckBody,
                    background: PlanImage | None = None) -> dict[str, Any]:
    """Load, check and picture a plan; the JSON of ``POST /api/v1/plan/check``. The site
    plan's picture is drawn over ``background`` (the site file's plan image), if any.

    Raises HTTPException 422 for an invalid or too large plan.
    """
    from coverwatch.formats.planfile import load_plan_text

    try:
        plan = load_plan_text(body.plan, site, PLAN_PATH)
    except SiteFileError as e:
        raise HTTPException(422, {"message": "the plan file is invalid",
                                  "problems": [_problem_json(p) for p in e.problems]}) \
            from None
    except CoverwatchError as e:
        raise HTTPException(422, {"message": str(e), "problems": []}) from None
    fixes = simulated_fixes(plan, body.hz)
    if fixes > MAX_PLAN_FIXES:
        raise HTTPException(422, {
            "message": f"the plan would simulate {fixes:,} fixes (officers × shift × hz); "
                       f"at most {MAX_PLAN_FIXES:,} are checked here: lower hz, shorten the "
                       "shift, or use `coverwatch plan check`",
            "problems": []})
    try:
        check = check_plan(site, plan, hz=body.hz, samples=body.samples, seed=body.seed,
                           threshold_s=body.threshold_s)
    except CoverwatchError as e:
        raise HTTPException(422, {"message": str(e), "problems": []}) from None
    headline, unmet = verdict_text(site, check)
    rules = []
    for st in check.evaluation.stats:
        longest = st.longest_lapse_us / US_PER_S
        rules.append({
            "post": st.post, "post_name": _post_name(site, st.post), "rule": st.rule,
            "need": st.need, "lapses": st.lapses, "alerts": st.alerts,
            "longest_gap_s": longest if st.lapses else None,
            "longest_gap": format_duration(longest) if st.lapses else None,
            "cover_pct": st.cover_pct,
        })
    response = [{
        "post": a.post, "post_name": _post_name(site, a.post), "k": a.k,
        "capability": a.capability,
        "median_s": a.median_s if a.median_s < float("inf") else None,
        "p90_s": a.p90_s if a.p90_s < float("inf") else None,
        "worst_s": a.worst_s if a.worst_s < float("inf") else None,
        "median": fmt_seconds(a.median_s), "p90": fmt_seconds(a.p90_s),
        "worst": fmt_seconds(a.worst_s),
        "under_threshold": a.under_threshold, "reach_s": a.reach_s,
        "under_reach": a.under_reach,
    } for a in check.arrivals]
    return {
        "verdict": "flagged" if check.alerts else "passes",
        "headline": headline,
        "unmet": unmet,
        "alerts": check.alerts,
        "plan": {"id": plan.id, "start": format_time(plan.start), "end": format_time(plan.end),
                 "start_ms": plan.start // 1000, "end_ms": plan.end // 1000,
                 "officers": len(plan.officers), "fixes": check.fixes},
        "site": {"id": site.id, "name": site.name, "timezone": site.timezone},
        "options": {"hz": body.hz, "samples": body.samples,
                    "seed": plan.seed if body.seed is None else body.seed,
                    "threshold_s": body.threshold_s},
        "rules": rules,
        "response": {"samples": check.arrivals[0].samples if check.arrivals else 0,
                     "threshold_s": body.threshold_s, "rows": response},
        "pictures": _pictures_json(site, check, body.threshold_s, background),
        # Only a plan that passes is randomised: a flagged one must be fixed first.
        "patrol_game": None if check.alerts else _patrol_game_json(site, plan, body),
    }


def _check_bounded(site: Site, body: PlanCheckBody,
                   background: PlanImage | None) -> dict[str, Any]:
    if not _slots.acquire(blocking=False):
        raise HTTPException(429, "other plan checks are running; try again in a few seconds",
                            headers={"Retry-After": "5"})
    try:
        return check_plan_json(site, body, background)
    finally:
        _slots.release()


@router.post("/api/v1/plan/check", responses=problems(429))
async def plan_check(
    body: PlanCheckBody,
    svc: Annotated[SiteUnit, Depends(site_unit)],
    who: Annotated[Principal, Depends(require("supervisor", "admin"))],
) -> dict[str, Any]:
    """Check a roster and patrol plan (YAML text) against the server's current site."""
    return await asyncio.to_thread(_check_bounded, svc.site, body, svc.doc.background)
