"""The SOS probe of bench/stress.py, in a process of its own that does nothing else, so its
timings are the server's and not a busy load generator's event loop.

    python bench/sosprobe.py PORT TOKENS_FILE        # then JSON lines on stdin / stdout

It listens on 127.0.0.1:PORT as the site's notification receiver (Apprise ``json://``)
and notes when each notification title first arrives, then prints ``{"ready": true}``.
For each ``{"url": ..., "seconds": S}`` read from stdin it sends an SOS about once a
second for S - 2.5 s (OsmAnd ``alarm=sos``, a fresh probe device each time, each on a new
connection, as a phone's alarm would be), waits for every one's first notification (at
most 30 s) and prints ``{"answer": [...], "notified": [...], "lost": n, "received": n}``:
seconds from sending to the full answer, and to the notification's arrival (null: no
200, or no notification within 30 s). An empty line or end of input stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

NOTICE_WAIT_S = 30.0


class Receiver:
    """A minimal HTTP receiver: when each notification title first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.count += 1
                with contextlib.suppress(Exception):
                    self.arrived.setdefault(str(orjson.loads(body).get("title", "")), now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


async def get_status(url: str) -> int:
    """One GET on a new connection; the answer's status once all of it has arrived."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = await reader.read()  # to the end: the server closes after the answer
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


class Probe:
    def __init__(self, tokens: list[str], rx: Receiver) -> None:
        self.tokens, self.rx, self.next = tokens, rx, 0

    async def one(self, url: str) -> tuple[float | None, float | None]:
        n, self.next = self.next, self.next + 1
        title = f"SOS from officer P{n}"
        query = f"id={self.tokens[n]}&alarm=sos&valid=false&timestamp={int(time.time())}"
        began = time.monotonic()
        try:
            ok = await get_status(f"{url}/osmand?{query}") == 200
        except OSError:
            ok = False
        answer = time.monotonic() - began if ok else None
        deadline = began + NOTICE_WAIT_S
        while title not in self.rx.arrived and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        arrived = self.rx.arrived.get(title)
        return answer, None if arrived is None else arrived - began

    async def phase(self, url: str, seconds: float) -> dict[str, object]:
        stop = time.monotonic() + seconds
        pending = []
        while time.monotonic() < stop - 2.5:
            pending.append(asyncio.create_task(self.one(url)))
            await asyncio.sleep(1.0)
        got = await asyncio.gather(*pending)
        return {"answer": [a for a, _ in got], "notified": [n for _, n in got],
                "lost": sum(n is None for _, n in got), "received": self.rx.count}


async def main(port: int, tokens: list[str]) -> None:
    rx = Receiver()
    listener = await asyncio.start_server(rx.handle, "127.0.0.1", port)
    probe = Probe(tokens, rx)
    loop = asyncio.get_running_loop()
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        order = orjson.loads(line)
        result = await probe.phase(order["url"], float(order["seconds"]))
        print(orjson.dumps(result).decode(), flush=True)
    listener.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]).read_text().split()))
