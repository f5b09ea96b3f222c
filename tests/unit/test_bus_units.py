"""The bus's pure parts, without a NATS server: names, the reference evaluator,
checkpoint encoding, and the live engine's adapter (stream-order determinism,
restoring from a checkpoint, refusing a checkpoint it did not sign)."""

from __future__ import annotations

import hashlib
import hmac
import io
import random
from pathlib import Path
from typing import Any

import pytest

from coverwatch.bus import BusMessage, BusNames, EventTally, server_urls
from coverwatch.bus.checkpoints import _decode, _encode
from coverwatch.domain.time import US_PER_S
from coverwatch.formats.sitefile import load_site
from coverwatch.reports.replay import lapse_record
from coverwatch.server.buscover import (
    KEEP_LAPSES_US,
    BusCover,
    LateEvents,
    StateRejected,
    _Pickler,
)

YARD = Path(__file__).resolve().parents[2] / "examples" / "yard" / "site.yaml"


def test_names_start_with_the_prefix_and_refuse_unsafe_ids() -> None:
    names = BusNames()
    assert (names.stream, names.leases, names.checkpoints) == (
        "coverwatch-events", "coverwatch-leases", "coverwatch-checkpoints")
    assert names.subject("harbour-yard") == "coverwatch.events.harbour-yard"
    assert names.site_of("coverwatch.events.harbour-yard") == "harbour-yard"
    for bad in ("a.b", "a*", ">", "A", "", "a b"):
        with pytest.raises(ValueError):
            names.subject(bad)
    with pytest.raises(ValueError):
        BusNames("Bad.Prefix")


def _event(seq: int, key: str, t_us: int, **data: Any) -> BusMessage:
    return BusMessage("s", seq, "event", key, {"t_us": t_us, **data})


def test_tally_state_does_not_depend_on_batch_boundaries() -> None:
    msgs = [_event(i, f"k{i}", i) for i in range(1, 50)]
    whole = EventTally("s")
    whole.take(msgs)
    parts = EventTally("s")
    for lo in range(0, len(msgs), 7):
        parts.take(msgs[lo:lo + 7])
    assert whole.snapshot() == parts.snapshot()
    again = EventTally("s")
    again.take(msgs[:-1] + msgs[-1:] + msgs[-1:])  # one event taken twice
    assert again.snapshot() != whole.snapshot()


def test_checkpoint_encoding_round_trips() -> None:
    cp = _decode("s", _encode(42, b"\x00state\n", "w1", 7), 3)
    assert (cp.seq, cp.state, cp.owner, cp.epoch, cp.revision) == (42, b"\x00state\n", "w1", 7, 3)
    empty = _decode("s", _encode(0, None, "w1", 1), 1)
    assert empty.state is None


def _stream(seed: int) -> list[BusMessage]:
    """A shift on the example site as a stream: events shuffled per window, watermarks."""
    rng = random.Random(seed)
    t0 = 1_900_000_000 * US_PER_S
    out: list[BusMessage] = []
    seq = 0
    officers = ["A1", "A2", "U1"]
    for w in range(60):
        window = []
        for officer in officers:
            for s in range(0, 10, 2):
                window.append({"kind": "fix", "t_us": t0 + (w * 10 + s) * US_PER_S,
                               "officer": officer, "x": rng.choice([1.0, 18.0, 150.0]),
                               "y": rng.choice([2.0, 8.0, 110.0]), "accuracy": 5.0})
        if w == 0:
            window += [{"kind": "duty", "t_us": t0, "officer": o, "on": True,
                        "capabilities": ["armed"]} for o in officers]
            window += [{"kind": "flag", "t_us": t0, "flag": "open-hours", "on": True},
                       {"kind": "gate", "t_us": t0, "post": "main-gate", "open": True}]
        rng.shuffle(window)
        for row in window:
            seq += 1
            out.append(BusMessage("yard", seq, "event", f"e{seq}", row))
        seq += 1
        out.append(BusMessage("yard", seq, "watermark", None,
                              {"horizon_us": t0 + (w + 1) * 10 * US_PER_S}))
    return out


def _run(cover: BusCover, msgs: list[BusMessage]) -> list[Any]:
    outputs: list[Any] = []
    events: list[BusMessage] = []
    for m in msgs:
        if m.kind == "event":
            events.append(m)
            continue
        if events:
            outputs += cover.take(events)
            events = []
        if m.kind == "watermark":
            outputs += cover.advance(m.horizon_us)
        else:
            outputs += cover.control(m.data)
    if events:
        outputs += cover.take(events)
    return outputs


def test_cover_resumed_from_a_checkpoint_equals_an_uninterrupted_run() -> None:
    site = load_site(YARD)
    msgs = _stream(3)
    whole = BusCover(site, secret=b"k")
    out_whole = _run(whole, msgs)
    cut = len(msgs) // 2
    first = BusCover(site, secret=b"k")
    out_first = _run(first, msgs[:cut])
    resumed = BusCover(site, secret=b"k", state=first.snapshot())
    out_rest = _run(resumed, msgs[cut:])
    lapses = [lapse_record(lp) for lp in whole.live.lapses()]
    assert lapses and [lapse_record(lp) for lp in resumed.live.lapses()] == lapses
    assert out_first + out_rest == out_whole
    assert any(getattr(o, "kind", None) == "alert" for o in out_whole)


def test_an_event_behind_a_watermark_is_late_whoever_evaluates() -> None:
    site = load_site(YARD)
    cover = BusCover(site, secret=b"k")
    t0 = 1_900_000_000 * US_PER_S
    cover.take([_event(1, "a", t0, kind="fix", officer="A1", x=1.0, y=2.0, accuracy=5.0)])
    cover.advance(t0 + 10 * US_PER_S)
    out = cover.take([_event(3, "late", t0 + 5 * US_PER_S, kind="fix", officer="A1", x=1.0,
                             y=2.0, accuracy=5.0)])
    assert out == [LateEvents(("late",))]
    restored = BusCover(site, secret=b"k", state=cover.snapshot())
    assert restored.live.horizon == cover.live.horizon


def test_a_late_state_event_is_applied_at_the_stream_horizon_by_every_owner() -> None:
    """Distributed mode shares the late path: the owner applies a late duty or gate event
    at the horizon of its stream, so a new owner replaying from a checkpoint agrees."""
    site = load_site(YARD)
    t0 = 1_900_000_000 * US_PER_S
    h = t0 + 10 * US_PER_S
    fix = {"kind": "fix", "officer": "A1", "x": 1.0, "y": 2.0, "accuracy": 5.0}
    msgs = [_event(1, "f1", t0, **fix), BusMessage("s", 2, "watermark", None, {"horizon_us": h}),
            _event(3, "duty", t0 + 5 * US_PER_S, kind="duty", officer="A1", on=True,
                   capabilities=["armed"], device="phone-a1", received_us=h + 3 * US_PER_S),
            _event(4, "gate", t0 + 5 * US_PER_S, kind="gate", post="main-gate", open=True),
            _event(5, "old", t0 + 4 * US_PER_S, kind="duty", officer="A1", on=False),
            _event(6, "f2", h + US_PER_S, **fix)]
    cover = BusCover(site, secret=b"k")
    out = _run(cover, msgs[:2]) + cover.take(msgs[2:5])
    # The booking-off stamped before the booking-on is late and superseded: not applied.
    assert out == [LateEvents(("duty", "gate", "old"), (("duty", h), ("gate", h)))]
    resumed = BusCover(site, secret=b"k", state=cover.snapshot())
    for c in (cover, resumed):
        c.take(msgs[5:])
        c.advance(h + 5 * US_PER_S)
        a1 = {o.officer: o for o in c.live.officers()}["A1"]
        assert a1.on_duty and c.live.gates()["main-gate"]
        states = {(r["post"], r["rule"]): r["state"] for r in c.live.cover_states()}
        assert states[("main-gate", "open-gate-staffed")] == "covered"
        late = c.live.late.summary(h + 5 * US_PER_S)
        assert (late["count"], late["applied"]) == (3, 2)
        assert {d["device"]: d["max_lag_s"] for d in late["devices"]}["phone-a1"] == 8.0


def test_a_checkpoint_without_late_state_still_loads() -> None:
    site = load_site(YARD)
    cover = BusCover(site, secret=b"k")
    del cover.live.__dict__["_state_t"], cover.live.__dict__["late"]  # as written before
    buf = io.BytesIO()
    _Pickler(buf).dump((cover.live, []))
    state = hmac.new(b"k", buf.getvalue(), hashlib.sha256).digest() + buf.getvalue()
    restored = BusCover(site, secret=b"k", state=state)
    assert restored.live.late.total == 0 and restored.live._state_t == {}


def test_a_checkpoint_signed_by_another_secret_is_refused() -> None:
    site = load_site(YARD)
    state = BusCover(site, secret=b"ours").snapshot()
    with pytest.raises(StateRejected):
        BusCover(site, secret=b"theirs", state=state)
    with pytest.raises(StateRejected):
        BusCover(site, secret=b"ours", state=state[:40] + b"x" + state[41:])


def test_new_rules_from_the_stream_switch_at_the_same_point_for_every_owner() -> None:
    site = load_site(YARD)
    text = YARD.read_text(encoding="utf-8")
    assert "grace_s: 60" in text
    stricter = text.replace("grace_s: 60", "grace_s: 3", 1)  # armed cover alerts sooner
    plain = _stream(5)
    half = len(plain) // 2
    change = BusMessage("yard", plain[half].seq, "control", "site:v2", {"site_source": stricter})
    msgs = plain[:half] + [change] + [
        BusMessage(m.site, m.seq + 1, m.kind, m.key, m.data) for m in plain[half:]]
    whole = BusCover(site, secret=b"k")
    out_whole = _run(whole, msgs)
    unchanged = BusCover(site, secret=b"k")
    assert _run(unchanged, plain) != out_whole  # the change did change something
    for cut in (half - 3, half, half + 1, half + 40):
        first = BusCover(site, secret=b"k")
        out_first = _run(first, msgs[:cut])
        # The factory is given the site file's rules; the checkpoint's own rules win.
        resumed = BusCover(site, secret=b"k", state=first.snapshot())
        assert out_first + _run(resumed, msgs[cut:]) == out_whole
        assert [lapse_record(lp) for lp in resumed.live.lapses()] == [
            lapse_record(lp) for lp in whole.live.lapses()]


def test_a_checkpoint_keeps_only_recent_closed_lapses() -> None:
    site = load_site(YARD)
    msgs = _stream(3)
    cover = BusCover(site, secret=b"k")
    _run(cover, msgs)
    closed = [lp for lp in cover.live.lapses(include_open=False)]
    assert len(closed) >= 2
    horizon = cover.live.horizon
    # Pretend an hour and more has passed since the first lapse ended.
    keep_from = sorted(lp.end for lp in closed if lp.end is not None)[1]
    cover.advance(keep_from + KEEP_LAPSES_US)
    restored = BusCover(site, secret=b"k", state=cover.snapshot())
    kept = restored.live.lapses(include_open=False)
    assert kept and all(lp.end is not None and lp.end >= keep_from for lp in kept)
    assert len(kept) < len(closed) and restored.live.horizon > horizon


def _weaker(site_text: str) -> str:
    """The example site with armed cover at the main gate needing one officer, not two."""
    import yaml

    doc = yaml.safe_load(site_text)
    for post in doc["posts"]:
        for rule in post["rules"]:
            if rule.get("capability") == "armed":
                rule["need"] = 1
    return yaml.safe_dump(doc, sort_keys=False)


def test_a_rule_change_from_the_bus_takes_effect_at_its_instant_wherever_it_waits() -> None:
    from coverwatch.server.live import LiveCover

    site = load_site(YARD)
    text = _weaker(YARD.read_text(encoding="utf-8"))
    msgs = _stream(5)
    t0 = 1_900_000_000 * US_PER_S
    at = t0 + 205 * US_PER_S  # between two watermarks: it waits for the horizon
    control = BusMessage("yard", 10**6, "control", "site:v2",
                         {"site_source": text, "effective_us": at})
    cut = 60  # published early: long before the horizon reaches ``at``
    stream = [*msgs[:cut], control, *msgs[cut:]]
    whole = BusCover(site, secret=b"k")
    out_whole = _run(whole, stream)
    # The single process's way: advance to the instant, then switch.
    ref = LiveCover(site, lateness_us=0, start_horizon=-(2**62))
    ref_out: list[Any] = []
    for m in msgs:
        if m.kind == "event":
            ref.add([{**m.data, "id": m.seq}])
        elif m.horizon_us >= at and ref.site is site:
            ref_out += ref.advance_to(at)
            ref_out += ref.switch_site(whole.live.site)
            ref_out += ref.advance_to(m.horizon_us)
        else:
            ref_out += ref.advance_to(m.horizon_us)
    assert [lapse_record(lp) for lp in whole.live.lapses()] == \
        [lapse_record(lp) for lp in ref.lapses()]
    assert out_whole == ref_out
    unchanged = BusCover(site, secret=b"k")
    assert _run(unchanged, msgs) != out_whole  # the change did change the outcome
    # A new owner resuming from a checkpoint taken while the change waited switches alike.
    first = BusCover(site, secret=b"k")
    _run(first, stream[:cut + 5])
    assert first.pending
    resumed = BusCover(site, secret=b"k", state=first.snapshot())
    _run(resumed, stream[cut + 5:])
    assert [lapse_record(lp) for lp in resumed.live.lapses()] == \
        [lapse_record(lp) for lp in whole.live.lapses()]
    # A change whose instant has passed is in force from the horizon, at once.
    late = BusCover(site, secret=b"k")
    _run(late, msgs[:cut])
    assert late.control({"site_source": text, "effective_us": t0}) is not None
    assert not late.pending and late.live.site is not site


def test_a_consumer_re_created_after_its_run_ended_is_ended_at_its_first_delivery() -> None:
    import asyncio

    from coverwatch.bus.worker import SiteRun

    class Sub:
        def __init__(self) -> None:
            self.calls = 0

        async def unsubscribe(self) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("NATS is restarting")

    async def scenario() -> tuple[Sub, SiteRun]:
        run = SiteRun("s", 1, None, None, None, None, lambda s: True, 1.0, 10)  # type: ignore[arg-type]
        sub = run._sub = Sub()
        await run.stop(checkpoint=False)  # the unsubscribe fails: NATS away
        assert sub.calls == 1
        # NATS is back; the client re-created the ordered consumer and delivers again.
        await run._deliver(_event(5, "k", 1))
        await run._deliver(_event(6, "k2", 2))
        return sub, run

    sub, run = asyncio.run(scenario())
    assert sub.calls == 2 and run._sub is None and run.queue.empty()


def test_the_owners_watermark_is_the_single_process_device_watermark() -> None:
    from coverwatch.server.devices import DeviceWatch
    from coverwatch.server.watermark import DeviceClock

    site = load_site(YARD)
    secret = b"k" * 32
    cover = BusCover(site, secret=secret, lateness_us=2 * US_PER_S,
                     max_lateness_us=10 * US_PER_S)
    watch = DeviceWatch(2 * US_PER_S, 10 * US_PER_S)
    now = 1_000 * US_PER_S
    uploads = [("d1", now - 6 * US_PER_S, now - US_PER_S), ("d2", now - US_PER_S, now),
               ("d3", now - 30 * US_PER_S, now - 20 * US_PER_S)]  # d3: silent too long
    for seq, (device, t, received) in enumerate(uploads, 1):
        cover.take([BusMessage("s", seq, "event", f"k{seq}", {
            "kind": "fix", "t_us": t, "officer": "A1", "x": 0.0, "y": 0.0, "accuracy": 5.0,
            "device": device, "received_us": received})])
        watch.note({"device": device, "t_us": t, "used": True}, received)
    assert cover.watermark(now) == watch.horizon(now) == now - 6 * US_PER_S
    assert cover.watermark(now + 20 * US_PER_S) == watch.horizon(now + 20 * US_PER_S)
    # The devices' times travel in the checkpoint: a new owner holds the same watermark.
    again = BusCover(site, secret=secret, state=cover.snapshot())
    assert again.watermark(now) == now - 6 * US_PER_S
    assert isinstance(again.devices, DeviceClock)


def test_server_urls_takes_one_url_or_a_cluster_list() -> None:
    assert server_urls("nats://a:4222") == ["nats://a:4222"]
    assert server_urls("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    assert server_urls(["nats://a:1,nats://b:2", "nats://c:3"]) == [
        "nats://a:1", "nats://b:2", "nats://c:3"]
    with pytest.raises(ValueError, match="no NATS URL"):
        server_urls(" , ")
