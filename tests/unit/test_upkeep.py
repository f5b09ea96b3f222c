"""The process's one upkeep task (server/upkeep.py): jobs never overlap themselves, a
step that waits holds up no other, a failing step is logged and the job goes on, a
quiet job is not stepped, and cancelling the upkeep cancels the steps still running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from coverwatch.server.upkeep import Upkeep


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(5000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never met")


def test_a_step_that_waits_holds_up_no_other_and_never_overlaps_itself() -> None:
    async def main() -> None:
        upkeep = Upkeep()
        gate = asyncio.Event()
        counts = {"slow": 0, "slow done": 0, "quick": 0}

        async def slow() -> None:
            counts["slow"] += 1
            await gate.wait()
            counts["slow done"] += 1

        async def quick() -> None:
            counts["quick"] += 1

        upkeep.every("slow", 0.0, slow)
        upkeep.every("quick", 0.001, quick)
        task = asyncio.create_task(upkeep.run())
        await _until(lambda: counts["quick"] >= 5)
        assert counts["slow"] == 1 and counts["slow done"] == 0  # still waiting, not again
        gate.set()
        await _until(lambda: counts["slow done"] >= 2)  # it finished, and was due again
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_failing_step_is_logged_and_its_job_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> int:
        upkeep = Upkeep()
        calls = [0]

        async def bad() -> None:
            calls[0] += 1
            if calls[0] % 2:
                raise ValueError("broken")
            await asyncio.sleep(0)
            raise KeyError("after a wait")

        upkeep.every("bad", 0.001, bad, failed="bad step failed")
        task = asyncio.create_task(upkeep.run())
        await _until(lambda: calls[0] >= 4)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return calls[0]

    assert asyncio.run(main()) >= 4
    failed = [r for r in caplog.records if r.getMessage() == "bad step failed"]
    assert {type(r.exc_info[1]) for r in failed if r.exc_info} == {ValueError, KeyError}


def test_a_quiet_job_is_asked_not_stepped() -> None:
    async def main() -> tuple[int, int]:
        upkeep = Upkeep()
        quiet = [True]
        stepped = [0]

        async def step() -> None:
            stepped[0] += 1

        upkeep.every("q", 0.001, step, quiet=lambda: quiet[0])
        task = asyncio.create_task(upkeep.run())
        await _until(lambda: upkeep.skipped >= 5)
        before = stepped[0]
        quiet[0] = False
        await _until(lambda: stepped[0] >= 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, stepped[0]

    assert asyncio.run(main())[0] == 0


def test_cancelling_the_upkeep_cancels_the_steps_still_running() -> None:
    async def main() -> list[str]:
        upkeep = Upkeep()
        seen: list[str] = []

        async def hang() -> None:
            seen.append("started")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        upkeep.every("hang", 0.001, hang)
        task = asyncio.create_task(upkeep.run())
        await _until(lambda: seen == ["started"])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen

    assert asyncio.run(main()) == ["started", "cancelled"]
