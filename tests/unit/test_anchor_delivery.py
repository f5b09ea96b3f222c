"""Anchors leave the machine: an https/http webhook receives the signed JSON, which verifies."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import orjson

from coverwatch.evidence.anchors import send_anchor, sign_document, verify_document
from coverwatch.evidence.keys import load_signing_key


class _Sink(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_anchor_sent_to_a_webhook_verifies(tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "audit.key")
    anchor = sign_document({"kind": "coverwatch.audit-anchor", "v": 1, "site": "yard",
                            "at": "2026-12-01T10:00:00Z", "head_id": 7, "head_hash": "ab"}, key)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok = send_anchor(f"http://127.0.0.1:{server.server_port}/anchors", anchor)
    finally:
        server.shutdown()
    assert ok
    received = orjson.loads(_Sink.bodies[-1])
    assert verify_document(received, key.trusted) is None
    received["head_id"] = 6
    assert verify_document(received, key.trusted) is not None


def test_an_unreachable_receiver_is_reported_not_raised() -> None:
    assert send_anchor("http://127.0.0.1:9/", {"site": "yard", "head_id": 1}) is False
