"""Messages of several events on the bus: read beside single-event ones, applied whole.

The gateway publishes a commit group as such messages (test_bus_chunks.py); a stream may
hold both kinds (single-event ones from an older gateway, or the relay's), and a consumer
must never split a message of several events (its items share one stream sequence, the
run's cursor).
"""

from __future__ import annotations

import asyncio

from natskit import NATS_URL, cleanup, need_nats, unique_names, wait_for

from coverwatch.bus import BusNames, Checkpoints, EventLog, EventTally, connect, open_bucket
from coverwatch.bus.log import BusMessage
from coverwatch.bus.siterun import SiteRun


def _row(t: int) -> dict[str, object]:
    return {"kind": "fix", "t_us": t, "officer": "ana"}


def _run(body) -> None:  # type: ignore[no-untyped-def]
    need_nats()
    names = unique_names()

    async def main() -> None:
        try:
            await asyncio.wait_for(body(names), 60)
        finally:
            await cleanup(NATS_URL, names)

    asyncio.run(main())


def test_a_follower_reads_single_and_batched_messages_in_order() -> None:
    async def body(names: BusNames) -> None:
        nc = await connect(NATS_URL)
        log = EventLog(nc.jetstream(), names)
        await log.ensure()
        await log.publish("quay", [("k1", _row(1))])
        ack = await log.publish_events("quay", [(f"k{i}", _row(i)) for i in (2, 3, 4)], "g1")
        again = await log.publish_events("quay", [("k2", _row(2))], "g1")
        assert again.duplicate and again.seq == ack.seq  # the message id drops a re-send
        await log.publish("quay", [("k5", _row(5))])
        got: list[list[BusMessage]] = []

        async def collect(items: list[BusMessage]) -> None:
            got.append(items)

        sub = await log.follow_whole("quay", 0, collect)
        assert await wait_for(lambda: len(got) == 3, 10)
        await sub.unsubscribe()
        assert [[m.key for m in items] for items in got] == [["k1"], ["k2", "k3", "k4"], ["k5"]]
        assert {m.seq for m in got[1]} == {ack.seq} and [m.index for m in got[1]] == [0, 1, 2]
        assert log.delivered["quay"].keys == {"k1": 1, "k2": 2, "k3": 2, "k4": 2, "k5": 3}
        await nc.close()

    _run(body)


def test_a_run_never_splits_a_message_of_several_events() -> None:
    async def body(names: BusNames) -> None:
        nc = await connect(NATS_URL)
        js = nc.jetstream()
        log = EventLog(js, names)
        await log.ensure()
        checkpoints = Checkpoints(await open_bucket(js, names.checkpoints))
        await log.publish("quay", [("k1", _row(1))])
        await log.publish_events("quay", [(f"k{i}", _row(i)) for i in range(2, 9)], "g1")
        await log.publish("quay", [("k9", _row(9))])
        last = await log.publish_watermark("quay", 10)
        # batch_max 2: a consumer batch of items would cut the message of seven.
        run = SiteRun("quay", 1, log, checkpoints, EventTally, None, lambda _: True,
                      0.2, 2)
        await run.start("w1")
        assert await wait_for(lambda: run.cp is not None and run.cp.seq == last, 15)
        await run.stop(checkpoint=True)
        tally = EventTally("quay", run.cp.state if run.cp is not None else None)
        assert (tally.events, tally.late) == (9, 0)
        await nc.close()

    _run(body)
