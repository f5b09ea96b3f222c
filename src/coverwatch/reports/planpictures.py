"""Pictures and the Markdown report of a plan check (adapter, matplotlib Agg).

- ``site-plan.png``: the site's plan image (its ``background``, as in the control
  room), walkways, barriers, posts, each patrol's route and a heat map of the
  worst-case response time (first officer with the capability the rules ask for
  most, along the walkways, worst over the shift);
- ``timeline.png``: per rule, the predicted count of officers against the need,
  with predicted lapses shaded;
- ``report.md``: the tables of `coverwatch plan check` and both pictures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from coverwatch.domain.planimage import PlanImage
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.planning.response import worst_response_raster
from coverwatch.reports.planbackdrop import draw_background
from coverwatch.reports.plans import PlanCheck, fmt_seconds

__all__ = ["plot_site_plan", "plot_timeline", "write_report"]


def _main_capability(site: Site) -> str | None:
    caps = [r.capability for p in site.posts for r in p.rules if r.capability is not None]
    return max(set(caps), key=caps.count) if caps else None


def _bbox(site: Site, check: PlanCheck, margin: float = 15.0) -> tuple[float, float, float, float]:
    xs: list[float] = []
    ys: list[float] = []
    for w in site.walkways:
        xs += [p[0] for p in w.points]
        ys += [p[1] for p in w.points]
    for post in site.posts:
        pts = [post.at] if post.at is not None else list(post.area or ())
        xs += [p[0] for p in pts]
        ys += [p[1] for p in pts]
    for route in check.sim.routes:
        xs += [p[0] for p in route]
        ys += [p[1] for p in route]
    return min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin


def plot_site_plan(path: Path, site: Site, check: PlanCheck, threshold_s: float,
                   background: PlanImage | None = None) -> None:
    """The site map with routes and the worst-case response heat map, over the site's
    plan image where it has one."""
    fig, ax = plt.subplots(figsize=(10, 8), dpi=110)
    bbox = _bbox(site, check)
    capability = _main_capability(site)
    who = f"first {capability} officer" if capability else "first officer"
    if check.field is not None:
        span = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
        gx, gy, sec = worst_response_raster(
            site, check.plan, check.sim, check.field, capability, bbox=bbox,
            cell_m=max(1.0, span / 150), moments=360)
        finite = sec[np.isfinite(sec)]
        vmax = max(threshold_s, float(finite.max()) if finite.size else threshold_s)
        shown = np.where(np.isfinite(sec), sec, vmax)
        cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="lightgray")
        mesh = ax.pcolormesh(gx, gy, np.ma.masked_invalid(np.where(np.isfinite(sec), sec,
                                                                    np.nan)),
                             cmap=cmap, vmin=0, vmax=vmax, shading="nearest", alpha=0.55)
        if not np.isfinite(sec).all():
            ax.text(0.99, 0.01, "grey: cannot be reached along the walkways (one-way, cut)",
                    transform=ax.transAxes, ha="right", fontsize=8)
        bar = fig.colorbar(mesh, ax=ax, shrink=0.8)
        bar.set_label(f"worst-case time for the {who} to arrive (s)")
        if finite.size and finite.max() > threshold_s:
            ax.contour(gx, gy, shown, levels=[threshold_s], colors="darkred", linewidths=1.2)
    for w in site.walkways:
        pts = np.asarray(w.points)
        ax.plot(pts[:, 0], pts[:, 1], color="dimgray", lw=4, alpha=0.6, solid_capstyle="round",
                zorder=2)
        if w.one_way:
            mid = len(pts) // 2
            a, b = pts[mid - 1], pts[mid]
            ax.annotate("", xy=(a + b) / 2 + (b - a) * 0.1, xytext=(a + b) / 2,
                        arrowprops={"arrowstyle": "-|>", "color": "black"}, zorder=3)
    for i, barrier in enumerate(site.barriers):
        pts = np.asarray(barrier.points)
        ax.plot(pts[:, 0], pts[:, 1], color="black", lw=3, ls="--" if len(pts) > 1 else "",
                marker="x" if len(pts) == 1 else None, zorder=4,
                label="barrier" if i == 0 else None)
    colours = plt.get_cmap("tab10")
    for i, (officer, route) in enumerate(zip(check.plan.officers, check.sim.routes,
                                             strict=True)):
        colour = colours(i % 10)
        caps = ", ".join(sorted(officer.capabilities)) or "unarmed"
        if route:
            pts = np.asarray(route)
            offset = (i % 5 - 2) * 0.8  # keep overlapping routes apart
            ax.plot(pts[:, 0] + offset, pts[:, 1] + offset, color=colour, lw=1.6, zorder=5,
                    label=f"{officer.id} ({caps}): patrol")
        else:
            x, y = float(check.sim.x[i, 0]), float(check.sim.y[i, 0])
            ax.plot(x, y, marker="o", ms=9, color=colour, mec="black", zorder=6,
                    label=f"{officer.id} ({caps}): holds {officer.post or f'({x:g}, {y:g})'}")
    for post in site.posts:
        if post.at is not None:
            ax.plot(*post.at, marker="s", ms=12, mfc="none", mec="navy", mew=2, zorder=7)
            worst = [a.worst_s for a in check.arrivals
                     if a.post == post.id and a.k == 1 and a.capability == capability]
            label = post.name + (f"\nworst {fmt_seconds(worst[0])} ({who})" if worst else "")
            ax.annotate(label, post.at, xytext=(8, -22), textcoords="offset points",
                        fontsize=10, weight="bold", color="navy", zorder=8)
        else:
            ring = np.asarray([*(post.area or ()), (post.area or ((0, 0),))[0]])
            ax.plot(ring[:, 0], ring[:, 1], color="navy", lw=2, zorder=7)
            ax.annotate(post.name, (float(ring[:, 0].mean()), float(ring[:, 1].mean())),
                        ha="center", fontsize=10, weight="bold", color="navy", zorder=8)
    draw_background(ax, background, bbox)
    ax.set_xlim(bbox[0], bbox[2])
    ax.set_ylim(bbox[1], bbox[3])
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, east)")
    ax.set_ylabel("y (m, north)")
    ax.set_title(f"Plan {check.plan.id} on {site.name}\n"
                 f"routes, and worst-case response (dark red line: {threshold_s:g} s)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timeline(path: Path, check: PlanCheck) -> None:
    """Per rule: officers counting over the shift, the need, and lapses in red."""
    stats = check.evaluation.stats
    start, end = check.plan.start, check.plan.end
    fig, axes = plt.subplots(len(stats), 1, figsize=(11, 1.5 + 1.3 * len(stats)), dpi=110,
                             sharex=True, squeeze=False)
    hours = (end - start) / US_PER_S / 3600
    for ax, st in zip(axes[:, 0], stats, strict=True):
        tl = st.timeline
        if not tl:
            continue
        t = np.array([(p.t - start) / US_PER_S / 3600 for p in tl] + [hours])
        count = np.array([p.count for p in tl] + [tl[-1].count])
        ax.step(t, count, where="post", color="black", lw=1.2, label="officers counting")
        ax.axhline(st.need, color="navy", ls=":", lw=1, label=f"need {st.need}")
        for lapse in check.evaluation.lapses:
            if (lapse.post, lapse.rule) != (st.post, st.rule):
                continue
            a = (lapse.start - start) / US_PER_S / 3600
            b = ((lapse.end or end) - start) / US_PER_S / 3600
            ax.axvspan(a, b, color="red" if lapse.alert_at else "orange", alpha=0.35, lw=0)
        inactive = [(p.t, q.t if q else end) for p, q in zip(tl, [*tl[1:], None], strict=True)
                    if p.state == "inactive"]
        for a_us, b_us in inactive:
            ax.axvspan((a_us - start) / US_PER_S / 3600, (b_us - start) / US_PER_S / 3600,
                       color="lightgray", alpha=0.6, lw=0)
        pct = st.cover_pct
        ax.set_ylabel(f"{st.post}\n{st.rule}", rotation=0, ha="right", va="center",
                      fontsize=8)
        ax.set_ylim(-0.3, max(int(count.max()), st.need) + 0.6)
        ax.set_yticks(range(0, max(int(count.max()), st.need) + 1))
        cover = "inactive all shift" if pct is None else f"cover {pct:.1f}%"
        ax.text(1.002, 0.5, f"{cover}\n{st.alerts} alert(s)", transform=ax.transAxes,
                fontsize=8, va="center")
    axes[-1, 0].set_xlabel(f"hours from {format_time(start)} (red: alerted lapse, orange: "
                           "lapse within grace, grey: rule not active)")
    axes[-1, 0].set_xlim(0, hours)
    fig.suptitle(f"Predicted cover per rule: plan {check.plan.id}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(directory: Path, site: Site, check: PlanCheck, *,
                 threshold_s: float = 82.0, background: PlanImage | None = None) -> list[Path]:
    """Write site-plan.png, timeline.png and report.md into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    site_png = directory / "site-plan.png"
    timeline_png = directory / "timeline.png"
    plot_site_plan(site_png, site, check, threshold_s, background)
    plot_timeline(timeline_png, check)
    lines = [
        f"# Plan check: {check.plan.id} on {site.name}",
        "",
        f"Shift {format_time(check.plan.start)} to {format_time(check.plan.end)}, "
        f"{len(check.plan.officers)} officers, {check.fixes} simulated fixes.",
        "",
        f"**{'FLAGGED' if check.alerts else 'OK'}**: {check.alerts} alert(s) predicted.",
        "",
        "## Cover per rule",
        "",
        "| Post | Rule | Need | Lapses | Alerts | Longest gap | Cover % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for st in check.evaluation.stats:
        pct = "inactive" if st.cover_pct is None else f"{st.cover_pct:.1f}"
        longest = fmt_seconds(st.longest_lapse_us / US_PER_S) if st.lapses else "-"
        lines.append(f"| {st.post} | {st.rule} | {st.need} | {st.lapses} | {st.alerts} | "
                     f"{longest} | {pct} |")
    if check.arrivals:
        lines += [
            "",
            f"## Response along walkways ({check.arrivals[0].samples} random attack moments)",
            "",
            f"| Post | Who | Median | p90 | Worst | ≤ {threshold_s:g} s | ≤ rule's reach_s |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for a in check.arrivals:
            reach = "-" if a.under_reach is None else \
                f"{100 * a.under_reach:.1f}% of {a.reach_s:g} s"
            lines.append(f"| {a.post} | officer {a.k} ({a.capability or 'any'}) | "
                         f"{fmt_seconds(a.median_s)} | {fmt_seconds(a.p90_s)} | "
                         f"{fmt_seconds(a.worst_s)} | {100 * a.under_threshold:.1f}% | "
                         f"{reach} |")
    lines += ["", "## Pictures", "", f"![Site, routes and response]({site_png.name})", "",
              f"![Predicted cover per rule]({timeline_png.name})", ""]
    report = directory / "report.md"
    report.write_text("\n".join(lines))
    return [report, site_png, timeline_png]
