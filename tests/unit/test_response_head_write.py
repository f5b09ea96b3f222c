"""A response's head leaves with its body in one send when the body follows at once,
and on its own at the next turn of the event loop when it does not (a stream's head
must not wait for the stream's first event). coverwatch.http.slowclients, issue 25."""

from __future__ import annotations

import asyncio

from coverwatch.http.slowclients import _HeadWithBody


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return name


def test_head_and_body_in_one_send() -> None:
    async def run() -> list[bytes]:
        real = _Transport()
        t = _HeadWithBody(real, asyncio.get_running_loop())
        t.write(b"HEAD")
        assert real.sent == []
        t.write(b"BODY")
        await asyncio.sleep(0)
        t.write(b"MORE")
        return real.sent
    assert asyncio.run(run()) == [b"HEADBODY", b"MORE"]


def test_a_head_alone_leaves_at_the_next_turn() -> None:
    async def run() -> list[list[bytes]]:
        real = _Transport()
        t = _HeadWithBody(real, asyncio.get_running_loop())
        t.write(b"HEAD")
        await asyncio.sleep(0)
        first = list(real.sent)
        t.write(b"EVENT")
        return [first, real.sent]
    assert asyncio.run(run()) == [[b"HEAD"], [b"HEAD", b"EVENT"]]


def test_close_sends_a_held_head_first() -> None:
    async def run() -> tuple[list[bytes], bool, str]:
        real = _Transport()
        t = _HeadWithBody(real, asyncio.get_running_loop())
        t.write(b"HEAD")
        t.close()
        await asyncio.sleep(0)
        return real.sent, t.is_closing(), t.get_extra_info("peername")
    assert asyncio.run(run()) == ([b"HEAD"], True, "peername")
