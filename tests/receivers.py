"""Real receivers for notification tests: an SMTP server (aiosmtpd) that Apprise's
``mailto://`` delivers to, and an HTTP server for ``json://`` and signed webhooks
whose ``/refuse`` paths answer 403 (the failure path, end to end)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["HttpReceiver", "Mailbox", "http_receiver", "mailbox"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server received: (recipients, parsed message, receive time)."""

    port: int
    messages: list[tuple[list[str], Message, float]] = field(default_factory=list)

    def url(self, to: str) -> str:
        """An Apprise mailto:// URL delivering to ``to`` through this server."""
        return (f"mailto://127.0.0.1:{self.port}?to={to}&from=coverwatch@example.org"
                "&mode=insecure")

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m, _ in self.messages if address in rcpt]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) \
            else envelope.content.encode()
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(content),
                              time.time()))
        return "250 OK"


@contextlib.contextmanager
def mailbox() -> Iterator[Mailbox]:
    port = _free_port()
    box = Mailbox(port)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class HttpReceiver:
    base: str
    requests: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]


@contextlib.contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    """Accepts POSTs (200) except under ``/refuse`` (403)."""
    received = HttpReceiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.requests.append((self.path, body, dict(self.headers.items())))
            self.send_response(403 if self.path.startswith("/refuse") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            received.requests.append((self.path, b"", dict(self.headers.items())))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.base = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
