"""A restart resumes the live state from its newest checkpoint (issue 25).

The server saves the whole live state as it ticks; a restart loads it and adds
only the stored events after it, instead of replaying the whole history. The
control room must not tell the difference: the same cover, lapses, officers,
timelines and alerts as before the restart, and as a full replay gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coverwatch.domain.time import format_time
from coverwatch.server.livecheckpoint import CHECKPOINT_KEY, resume
from coverwatch.storage import open_store
from coverwatch.storage.versions import load_versions
from serverkit import YARD, Caller, FakeClock, Kit, base_settings, running_server


def _fix(kit: Kit, phone: Caller, x: float = 1.0) -> None:
    r = kit.post_events(phone, [{"t": kit.clock.iso(), "kind": "fix", "x": x, "y": 2.0,
                                 "accuracy_m": 3}])
    assert r.status_code == 200 and r.json()["late"] == 0, r.text


def _seen(kit: Kit) -> dict[str, Any]:
    live = kit.svc.live
    return {
        "horizon": live.horizon,
        "cover": live.cover_states(),
        "lapses": live.lapses(),
        "officers": live.officers(),
        "timelines": [(s.post, s.rule, s.active_us, s.covered_us, s.lapses, s.alerts,
                       list(s.timeline)) for s in live.timelines()],
        "alerts": sorted((a.to_record() for a in kit.svc.book.alerts()),
                         key=lambda r: str(r["id"])),
    }


def test_a_restart_gives_the_same_cover_and_alerts_from_the_checkpoint(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, tmp_path / "data")
    with running_server(settings, clock) as kit:
        phone, _ = kit.device("phone-a1", "A1")
        ingest = kit.api_token("gateway", "ingest")
        now = format_time(kit.clock())
        r = kit.post_events(ingest, [
            {"t": now, "kind": "duty", "officer": "A1", "on": True, "capabilities": ["armed"]},
            {"t": now, "kind": "flag", "flag": "open-hours", "on": True},
            {"t": now, "kind": "gate", "post": "main-gate", "open": True}])
        assert r.status_code == 200, r.text
        for i in range(30):  # 150 s: checkpoints are saved along the way
            _fix(kit, phone, x=1.0 if i < 20 else 400.0)  # then A1 walks off: a lapse
            kit.advance(5)
        for _ in range(3):  # stored after the newest checkpoint, not yet evaluated
            _fix(kit, phone, x=1.0)
            kit.clock.advance(1)
        saved_at = kit.svc.last_checkpoint
        before = _seen(kit)
        assert before["lapses"] and before["alerts"]
        store = kit.svc.store
        cp = resume(store, load_versions(store))
        assert cp is not None and cp.live.horizon == saved_at
        assert any(lp.end is not None and lp.end > saved_at for lp in before["lapses"]) \
            or saved_at < kit.svc.live.horizon
        assert cp.live.max_id < store.max_event_id()
    with running_server(settings, clock) as kit:
        assert _seen(kit) == before
    # Without a checkpoint (a forged one is ignored) every stored event is replayed.
    store = open_store(None, settings.data_dir)
    store.set_state(CHECKPOINT_KEY, "Zm9yZ2Vk")
    # Checked before the server starts: once it runs, its ticker may save a new checkpoint.
    assert resume(store, load_versions(store)) is None
    store.close()
    with running_server(settings, clock) as kit:
        assert _seen(kit) == before
