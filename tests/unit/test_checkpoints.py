"""Report checkpoints: resuming from a saved engine state equals one uninterrupted run.

The engine property runs generated scenarios with a state taken (and round-tripped
through JSON) at a random cut; the store property saves checkpoints, stores late
events behind them, and compares checkpointed reports with full recomputes.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.time import US_PER_S
from coverwatch.engine import CoverEngine, engine_state, restore_engine
from coverwatch.reports.history import recompute
from coverwatch.storage import open_store
from coverwatch.storage.versions import SiteVersion
from reference import sort_events, to_batch
from strategies import scenarios

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.data())
def test_resuming_from_a_saved_state_equals_one_run(data: st.DataObject) -> None:
    sc = data.draw(scenarios())
    ordered = sort_events(sc.events)
    if not ordered:
        return
    start = ordered[0].t
    end = ordered[-1].t if sc.end is None else sc.end
    whole = CoverEngine(sc.site, start)
    whole.feed(to_batch(ordered))
    whole.close(end)

    cut = data.draw(st.integers(start, end), label="cut")
    first = CoverEngine(sc.site, start)
    first.feed(to_batch([e for e in ordered if e.t < cut]))
    first.advance(cut)
    names = [str(i) for i in range(64)]
    state = orjson.loads(orjson.dumps(engine_state(first, names)))
    resumed = restore_engine(sc.site, state)
    resumed.feed(to_batch([e for e in ordered if e.t >= cut]))
    resumed.close(end)
    # Lapses closed before the cut are the first run's; the rest come from the resumed one.
    joined = sorted(first.lapses + resumed.lapses, key=lambda lp: (lp.start, lp.post, lp.rule))
    assert joined == whole.lapses
    assert resumed.stats == whole.stats, (resumed.stats, whole.stats)


def _fixes(rng: random.Random, t0: int, n: int, officers: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for k in range(n):
        t = t0 + rng.randrange(0, 3 * 3600) * US_PER_S
        rows.append({"kind": "fix", "t_us": t, "officer": f"O{rng.randrange(officers)}",
                     "x": rng.uniform(-60, 60), "y": rng.uniform(-60, 60),
                     "accuracy": 5.0, "source": "test", "raw": k})
    return rows


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), splits=st.lists(st.integers(0, 3 * 3600), max_size=4),
       late=st.integers(0, 40))
def test_checkpointed_reports_equal_full_recomputes(
    seed: int, splits: list[int], late: int
) -> None:
    rng = random.Random(seed)
    t0 = 1_800_000_000 * US_PER_S
    versions = [SiteVersion(0, YARD.read_text(encoding="utf-8"))]
    every = 600 * US_PER_S
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, Path(tmp))
        try:
            duty = [{"kind": "duty", "t_us": t0, "officer": f"O{i}", "on": True,
                     "capabilities": "armed" if i % 2 else "", "source": "test"}
                    for i in range(6)]
            store.append_events(duty + _fixes(rng, t0, 400, 6))
            until = t0 + 3 * 3600 * US_PER_S
            recompute(store, versions, until=until, every_us=every)  # saves checkpoints
            assert store.checkpoint_times()
            # Late events land behind saved checkpoints: those must not be used.
            store.append_events([{**r, "late": True} for r in _fixes(rng, t0, late, 8)])
            for s in [0, *splits]:
                since = t0 + s * US_PER_S
                fast = recompute(store, versions, until=until, since=since, every_us=every)
                full = recompute(store, versions, until=until, since=since, checkpoints=False)
                assert fast.lapses == full.lapses
                assert fast.stats == full.stats
                assert (fast.events, fast.late_events) == (full.events, full.late_events)
            # The checkpointed reports did start from checkpoints.
            last = recompute(store, versions, until=until, since=until - 60 * US_PER_S,
                             every_us=every)
            assert last.started_at is not None and last.started_at > t0
        finally:
            store.close()


def test_a_state_taken_under_other_rules_is_refused() -> None:
    from coverwatch.formats.sitefile import load_site

    site = load_site(YARD)
    engine = CoverEngine(site, 0)
    engine.advance(10)
    state = engine_state(engine, OfficerRegistry().names)
    state["rules"] = state["rules"][1:]
    try:
        restore_engine(site, state)
    except ValueError as e:
        assert "other rules" in str(e)
    else:
        raise AssertionError("a mismatched state was accepted")
