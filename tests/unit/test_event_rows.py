"""The batch keying of event rows (issue 25) gives exactly what keying each row does."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from coverwatch.storage.eventrows import event_row, event_rows, key_times
from coverwatch.storage.tlog import event_leaf, event_leaves

# Mostly floats: a plain fix takes the batch's own path, anything else event_row's.
_value = st.one_of(st.floats(allow_nan=True), st.floats(-1e3, 1e3), st.floats(-1e3, 1e3),
                   st.none(), st.integers(-5, 5), st.booleans(), st.text(max_size=3))
_row = st.fixed_dictionaries(
    {"kind": st.sampled_from(["fix", "fix", "fix", "duty", "gate", "flag"]),
     "officer": st.one_of(st.text(max_size=4), st.text(min_size=1, max_size=4), st.none()),
     "post": st.one_of(st.none(), st.just("p1")), "flag": st.one_of(st.none(), st.just("f")),
     "t_us": st.one_of(st.integers(0, 2**62), st.booleans()),
     "source": st.sampled_from(["http", "http", "", "mqtt"]),
     "x": _value, "y": _value, "accuracy": _value},
    optional={"device": st.one_of(st.none(), st.text(max_size=4), st.integers()),
              "accuracy_source": st.sampled_from([None, "reported", "hdop", "default", "none"]),
              "capabilities": st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=2)),
              "raw": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers())),
              "received_us": st.integers(0, 10), "late": st.booleans(),
              "applied_us": st.one_of(st.none(), st.integers(0, 10)),
              "on": st.one_of(st.none(), st.booleans())},
)


def _one(row: dict[str, Any]) -> Any:
    try:
        return [event_row(row, 7, "s")]
    except Exception as e:
        return type(e)


def _batch(row: dict[str, Any]) -> Any:
    try:
        return event_rows([row], 7, "s")
    except Exception as e:
        return type(e)


@given(st.lists(_row, max_size=6))
def test_event_rows_is_event_row_of_each(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        one, batch = _one(row), _batch(row)
        assert repr(batch) == repr(one)  # repr: NaN equals itself


@given(_row, st.text(max_size=6))
@example({"kind": "fix", "officer": "A|12|", "t_us": 5, "source": "http", "x": 1.0, "y": 2.0,
          "accuracy": 0.0}, "7|-3|")
def test_key_times_hold_the_stored_time(row: dict[str, Any], device: str) -> None:
    # A key-and-time lookup (the events index is (site, t_us, key)) finds every key,
    # whatever "|" and digits its names hold.
    try:
        key = event_row({**row, "device": device}, 7, "s")[2]
    except Exception:
        return
    assert row["t_us"] in key_times([key])


@given(st.lists(st.tuples(st.integers(1, 2**40), st.text(max_size=6),
                          st.one_of(st.none(), st.integers(0, 2**62))), max_size=5))
def test_event_leaves_are_event_leaf_of_each(stored: list[tuple[int, str, int | None]]) -> None:
    received = {k: at for _, k, at in stored}
    pairs = [(i, k) for i, k, _ in stored]
    assert event_leaves(pairs, received) == [
        ("event", str(i), event_leaf(i, k, received[k])) for i, k in pairs]


class _Mapping(dict):  # type: ignore[type-arg]
    """Not exactly a dict: validate_records checks it on the full path."""


_SITE = """site: s
name: S (fictional)
timezone: UTC
posts:
  - id: p
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 30, grace_s: 60}
"""
_fix_value = st.one_of(st.floats(-1e3, 1e3), st.floats(allow_nan=True, allow_infinity=True),
                       st.none(), st.integers(-3, 3), st.booleans(), st.just("1.5"))
_fix = st.fixed_dictionaries(
    {"kind": st.sampled_from(["fix", "fix", "fix", "duty"]),
     "t": st.sampled_from(["2030-01-01T08:00:00Z", "2030-01-01T08:00:00.5+01:00", "1900-01-01",
                           "2030-01-01T09:00:00Z", "soon", 1_893_484_800, None])},
    optional={"officer": st.one_of(st.text(max_size=3), st.just("A\u200b"), st.just("x" * 201),
                                   st.integers()),
              "x": _fix_value, "y": _fix_value, "accuracy_m": _fix_value,
              "lat": st.floats(-90, 90), "on": st.booleans()},
)


_PLAIN = {"kind": "fix", "t": "2030-01-01T08:00:00Z", "officer": "A1", "x": 1.5, "y": -2.0}


@given(st.lists(_fix | _fix_value.map(lambda a: {**_PLAIN, "accuracy_m": a}), max_size=5))
@example([_PLAIN, {**_PLAIN, "accuracy_m": 4.0}, {**_PLAIN, "t": "2030-01-01T08:00:10Z"}])
def test_plain_fixes_are_checked_inline_as_on_the_full_path(records: list[dict[str, Any]]
                                                            ) -> None:
    from coverwatch.domain.time import parse_time
    from coverwatch.formats.sitefile import load_site_text
    from coverwatch.formats.validation import InvalidEvents, validate_records

    site = load_site_text(_SITE)
    now = parse_time("2030-01-01T08:00:30Z")

    def check(recs: list[Any]) -> Any:
        try:
            return validate_records(recs, site, now_us=now, max_future_us=60 * 10**6)
        except InvalidEvents as e:
            return [p.as_dict() for p in e.problems]

    assert repr(check(records)) == repr(check([_Mapping(r) for r in records]))
