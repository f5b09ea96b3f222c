"""The demo's simulator stamps each fix when it sends it: on a loaded machine a round of a
dozen posts takes seconds, and fixes stamped at the round's start arrived late (issue 19)."""

from __future__ import annotations

import asyncio
import json

import httpx

from coverwatch.cli.demo import OFFICERS, simulate
from coverwatch.domain.time import parse_time

T0 = 1_900_000_000_000_000


def test_each_fix_is_stamped_when_it_is_sent() -> None:
    now = [T0]
    stop = asyncio.Event()
    sent: list[tuple[int, dict[str, object]]] = []

    def clock() -> int:
        return now[0]

    def handler(request: httpx.Request) -> httpx.Response:
        for event in json.loads(request.content):
            if event["kind"] == "fix":
                sent.append((now[0], event))
        now[0] += 700_000  # every post takes 0.7 s: a slow, loaded server
        if len(sent) >= 2 * len(OFFICERS):
            stop.set()
        return httpx.Response(200, json={})

    asyncio.run(simulate("http://demo", {o.name: "t" for o in OFFICERS}, "c", stop=stop,
                         clock=clock, transport=httpx.MockTransport(handler)))
    assert len(sent) >= len(OFFICERS)
    for at, fix in sent:
        assert parse_time(str(fix["t"])) == at
