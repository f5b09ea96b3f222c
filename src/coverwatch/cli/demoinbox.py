"""The demo's inbox: a local receiver for the demo users' notifications.

`coverwatch demo` gives each demo user a contact ``json://127.0.0.1:PORT/<user>``
(Apprise's JSON POST) pointing here, so the sites' ``escalation:`` sections
reach a person: every message is printed on the console and listed on a page
(``http://127.0.0.1:PORT/``). It listens on the loopback address only and
keeps messages in memory; it exists only in the demo.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Inbox", "Received", "demo_inbox"]

_KEEP = 500


@dataclass(frozen=True, slots=True)
class Received:
    to: str
    title: str
    body: str
    at: datetime


@dataclass
class Inbox:
    """What arrived, newest last; ``url(user)`` is the contact that delivers here."""

    port: int
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def page(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, user: str) -> str:
        return f"json://127.0.0.1:{self.port}/{user}"

    def add(self, message: Received) -> None:
        with self.lock:
            self.messages.append(message)
            del self.messages[:-_KEEP]

    def render(self) -> bytes:
        with self.lock:
            rows = "".join(
                f"<tr><td>{m.at:%H:%M:%S}</td><td>{html.escape(m.to)}</td>"
                f"<td><b>{html.escape(m.title)}</b><br>{html.escape(m.body)}</td></tr>"
                for m in reversed(self.messages))
        empty = "" if rows else "<p>Nothing yet: an alert nobody acknowledges arrives here.</p>"
        return (
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            "<title>Demo inbox</title><style>body{font:15px system-ui,sans-serif;margin:1em}"
            "table{border-collapse:collapse;width:100%}td{border-top:1px solid #ccc;"
            "padding:.4em;vertical-align:top;overflow-wrap:anywhere}</style>"
            "<h1>Demo inbox</h1><p>What coverwatch sent to the demo's people (UTC), "
            f"newest first.</p>{empty}<table>{rows}</table>").encode()


def _handler(inbox: Inbox, on_message: Callable[[Received], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            try:
                data: Any = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                data = {}
            data = data if isinstance(data, dict) else {}
            received = Received(self.path.strip("/") or "?", str(data.get("title") or ""),
                                str(data.get("message") or ""), datetime.now(UTC))
            inbox.add(received)
            on_message(received)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            body = inbox.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints
            pass

    return Handler


@contextlib.contextmanager
def demo_inbox(on_message: Callable[[Received], None] = lambda m: None,
               port: int = 0) -> Iterator[Inbox]:
    """Run the inbox on 127.0.0.1 (a free port unless given) until the block ends."""
    inbox = Inbox(0)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(inbox, on_message))
    inbox.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="demo-inbox", daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()
