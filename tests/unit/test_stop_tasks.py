"""The server stops even when a background task ignores its cancellation
(seen: an MQTT consumer whose broker disconnect never completed hung shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from coverwatch import bootstrap


def test_a_task_that_ignores_cancellation_does_not_hold_up_the_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "_STOP_WAIT_S", 0.2)
    stopped: list[str] = []

    release: asyncio.Event

    async def stubborn() -> None:
        # Swallows every cancellation until the test lets it go.
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    async def polite() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append("polite")

    async def main() -> tuple[bool, bool]:
        nonlocal release
        release = asyncio.Event()
        a = asyncio.create_task(stubborn())
        b = asyncio.create_task(polite())
        await asyncio.sleep(0)
        await bootstrap._stop_tasks([a, b])
        done = (a.done(), b.done())
        release.set()
        a.cancel()
        await asyncio.wait([a])
        return done

    assert asyncio.run(asyncio.wait_for(main(), 10)) == (False, True)
    assert stopped == ["polite"]
