"""The device watermark kept as devices report (a heap) says what the scan over every
device says, whatever the order of reports, restarts, merges and clock readings (issue 25)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.server.devices import DeviceWatch
from coverwatch.server.watermark import device_horizon

S = 1_000_000
LATENESS, MAX_LATENESS = 2 * S, 30 * S

step = st.one_of(
    st.tuples(st.just("note"), st.integers(0, 5), st.integers(-40, 40), st.booleans()),
    st.tuples(st.just("merge"), st.integers(0, 5), st.integers(-40, 40), st.booleans()),
    st.tuples(st.just("load"), st.integers(0, 5), st.integers(-40, 40), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 5), st.integers(-5, 20), st.booleans()),
)


def _scan(watch: DeviceWatch, now: int) -> int:
    return device_horizon(now, LATENESS, MAX_LATENESS,
                          ((s.last_t, s.last_received) for s in watch._seen.values()))


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=80))
def test_the_heap_says_what_the_scan_says(steps: list[tuple[str, int, int, bool]]) -> None:
    watch = DeviceWatch(LATENESS, MAX_LATENESS)
    now = 100 * S
    for what, device, offset, used in steps:
        name = f"phone-{device}"
        if what == "tick":  # mostly forward, sometimes back (a test clock, a restart)
            now += offset * S
        elif what == "note":
            watch.note({"device": name, "officer": "O1", "t_us": now + offset * S // 4,
                        "used": used}, now)
        else:
            rep: dict[str, Any] = {"officer": "O1", "received_us": now + offset * S}
            (watch.merge if what == "merge" else watch.load)({name: rep})
        assert watch.horizon(now) == _scan(watch, now)


def test_many_reports_keep_the_heap_small() -> None:
    watch = DeviceWatch(LATENESS, MAX_LATENESS)
    for i in range(20_000):
        now = 100 * S + i * 10_000
        watch.note({"device": f"phone-{i % 10}", "t_us": now, "used": True}, now)
        assert watch.horizon(now) == _scan(watch, now)
    assert len(watch._times._heap) <= 4 * 10 + 1024


def test_a_clock_read_earlier_counts_the_devices_quiet_later() -> None:
    watch = DeviceWatch(LATENESS, MAX_LATENESS)
    now = 100 * S
    watch.note({"device": "phone-1", "t_us": now - 10 * S, "used": True}, now)
    assert watch.horizon(now + 60 * S) == now + 60 * S - LATENESS  # quiet by then
    assert watch.horizon(now) == now - 10 * S == _scan(watch, now)
