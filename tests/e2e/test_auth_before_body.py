"""Authentication before the body (issue 19, F2), against a real uvicorn server.

Any ``Authorization`` header or ``cw_session`` cookie, valid or not, used to
raise the body limit to 16 MiB, and FastAPI read and parsed the body before
authentication ran: a bogus token with 16 MiB of ``[{},{},…]`` took hundreds of
MB and blocked the event loop for seconds. Now the credential is checked first:
a wrong one is answered 401 before a byte of the body is read (the test sends
none of it), and until a credential holds, the public limit applies.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from serverkit import FakeClock, LiveServer, base_settings, live_server, write_site

SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(base_settings(write_site(tmp_path), tmp_path / "data"), FakeClock()) as s:
        yield s


def _head_only(server: LiveServer, headers: dict[str, str], length: int) -> bytes:
    """Send a POST's headers declaring ``length`` bytes of body, and none of the body;
    return what the server answers (it must answer without waiting for the body)."""
    url = urlsplit(server.url)
    # A route with a body model: FastAPI reads and parses such a body before any dependency.
    lines = ["POST /api/v1/devices HTTP/1.1", f"Host: {url.netloc}",
             "Content-Type: application/json", f"Content-Length: {length}",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"[{},")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)  # a server waiting for the body times out here
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer cwt_bogus"},
    {"Authorization": "Bearer cwd_bogus"},
    {"Cookie": "cw_session=bogus"},
    {"Authorization": "Basic Zm9vOmJhcg=="},
])
def test_a_bogus_credential_with_16_mib_is_refused_before_the_body(
    server: LiveServer, headers: dict[str, str]
) -> None:
    answer = _head_only(server, headers, SIXTEEN_MIB)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_no_credential_gets_the_public_limit(server: LiveServer) -> None:
    answer = _head_only(server, {}, SIXTEEN_MIB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_valid_token_still_sends_a_large_batch(server: LiveServer) -> None:
    _, token = server.svc.store.create_api_token("gate-bridge", ["ingest"])
    t = "2030-01-01T08:00:00Z"
    events = [{"t": t, "kind": "fix", "officer": f"O{i}", "x": float(i), "y": 0.0}
              for i in range(3000)]  # about 200 KB: over the public limit
    r = httpx.post(f"{server.url}/api/v1/events", json=events, timeout=60,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3000
