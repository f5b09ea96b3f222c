"""The store's two helpers for the distributed mode, on SQLite and PostgreSQL.

``row_key`` is the key the store gives a row (the bus's message id), and
``mark_late`` flags stored events late by key (the site's stream decided so).
"""

from __future__ import annotations

from coverwatch.storage import Store, row_key


def _fix(t: int, x: float) -> dict[str, object]:
    return {"kind": "fix", "t_us": t, "officer": "A1", "x": x, "y": 0.0, "accuracy": 5.0,
            "source": "http"}


def test_row_key_is_the_stored_key_and_mark_late_flags_by_it(store: Store) -> None:
    rows = [_fix(1_000_000, 1.0), _fix(2_000_000, 2.0), _fix(3_000_000, 3.0)]
    store.append_events(rows)
    keys = [row_key(r) for r in rows]
    assert len(set(keys)) == 3
    again = store.append_events([_fix(2_000_000, 2.0)])  # the same event: the same key
    assert again.duplicates == 1
    assert store.mark_late([keys[1], "fix|nobody|0||x"]) == 1
    assert store.mark_late([]) == 0
    late = {r["t_us"]: r["late"] for r in store.events_since(0)}
    assert late == {1_000_000: False, 2_000_000: True, 3_000_000: False}
    assert [r["t_us"] for r in store.events_since(0, include_late=False)] == [1_000_000,
                                                                             3_000_000]


def test_mark_late_finds_keys_whose_names_hold_bars_and_digits(store: Store) -> None:
    # The events index is (site, t_us, key): mark_late asks by the times a key may hold.
    odd = {**_fix(4_000_000, 4.0), "officer": "A|12|9", "device": "7|-3|"}
    store.append_events([odd, _fix(5_000_000, 5.0)])
    assert store.mark_late([row_key(odd)], {row_key(odd): 6_000_000}) == 1
    got = {r["t_us"]: (r["late"], r["applied_us"]) for r in store.events_since(0)}
    assert got == {4_000_000: (True, 6_000_000), 5_000_000: (False, None)}
