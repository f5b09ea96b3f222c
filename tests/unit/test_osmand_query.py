"""A phone's query is split without Starlette's parser when nothing in it is escaped
(issue 25); the result is always what ``dict(request.query_params)`` gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from coverwatch.api.device_routes import query_params


def _request(query: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/osmand", "headers": [],
                    "query_string": query})


@given(st.lists(st.sampled_from(
    ["id", "lat", "=", "&", "&&", "a=b", "x", "=1", "é", "%41", "%zz", "+", ";", "1.5", " "]),
    max_size=12))
def test_the_split_is_what_starlette_parses(parts: list[str]) -> None:
    query = "".join(parts).encode("utf-8")
    request = _request(query)
    assert query_params(request) == dict(request.query_params)


def test_a_phones_query() -> None:
    q = b"id=tok&lat=51.5000180&lon=-0.1199280&timestamp=1900000000000&accuracy=5&batt=81&id=b"
    assert query_params(_request(q)) == {"id": "b", "lat": "51.5000180", "lon": "-0.1199280",
                                         "timestamp": "1900000000000", "accuracy": "5",
                                         "batt": "81"}
