"""The committer takes a group one turn of the loop after it starts, so the requests read
meanwhile join it (more per fsync under load), unless a device alarm is first in line:
an alarm waits for nothing (issue 25, issue 19)."""

from __future__ import annotations

import asyncio
import importlib
from types import SimpleNamespace
from typing import Any

import pytest

from coverwatch.server.handlers.ingest import CommitQueue, _Request

# The package re-exports the function ``ingest``, which hides the module of that name.
ingest = importlib.import_module("coverwatch.server.handlers.ingest")


def _request(source: str, alarm: bool = False) -> _Request:
    reports = [{"alarm": "sos"}] if alarm else []
    return _Request([], source, None, asyncio.get_running_loop().create_future(), reports)


def _groups(monkeypatch: pytest.MonkeyPatch, alarm_first: bool = False) -> list[list[str]]:
    groups: list[list[str]] = []

    async def committed(unit: Any, group: list[_Request]) -> None:
        groups.append([r.source for r in group])

    monkeypatch.setattr(ingest, "_commit_group", committed)

    async def run() -> None:
        unit: Any = SimpleNamespace(commits=CommitQueue())
        unit.commits.waiting.append(_request("a", alarm_first))
        committer = asyncio.create_task(ingest._commit_waiting(unit))
        await asyncio.sleep(0)  # the committer's first turn
        unit.commits.waiting.append(_request("b"))  # read during that turn
        await committer

    asyncio.run(run())
    return groups


def test_a_request_read_during_the_committers_first_turn_joins_the_group(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _groups(monkeypatch) == [["a", "b"]]


def test_an_alarm_first_in_line_is_committed_without_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Committed in the committer's first turn, before "b" was read (which a new
    # committer takes): the alarm is not held back for it.
    assert _groups(monkeypatch, alarm_first=True) == [["a"]]
