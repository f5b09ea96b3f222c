"""``format_time`` writes exactly the text it wrote with strftime (issue 25 made it cheaper)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from coverwatch.domain.time import format_time

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LOW = round((dt.datetime(1, 1, 1, tzinfo=dt.UTC) - EPOCH).total_seconds()) * 1_000_000
HIGH = round((dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - EPOCH).total_seconds()) * 1_000_000


def _strftime(t_us: int) -> str:
    moment = EPOCH + dt.timedelta(microseconds=t_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond
                           else "%Y-%m-%dT%H:%M:%SZ")


@given(st.integers(LOW, HIGH) | st.integers(0, 7_258_118_400_000_000).map(
    lambda t: t - t % 1_000_000))
def test_the_text_is_strftimes(t_us: int) -> None:
    assert format_time(t_us) == _strftime(t_us)


def test_examples() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(1_900_000_000_000_001) == "2030-03-17T17:46:40.000001Z"
