"""Slow clients are closed (issue 19, deliverable 7), against `coverwatch serve` itself.

Raw sockets: connections that send a request head a piece at a time and never
finish it, and a request whose body stops arriving, used to stay open for ever
(3 000 of 3 000 partial requests still open after 40 s). Now the head has a
deadline (coverwatch.http.slowclients) and the body an idle limit
(coverwatch.http.limits). The test asserts that the server closes them, with
a generous bound, not how fast.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverkit import write_site

SCRIPT = Path(sys.executable).parent / "coverwatch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    site = write_site(tmp_path)
    log = (tmp_path / "server.log").open("ab")
    proc = subprocess.Popen([str(SCRIPT), "serve", "--site", str(site), "--data-dir",
                             str(tmp_path / "data"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` within ``within_s`` (reading what it sends)."""
    sock.settimeout(within_s)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def test_a_request_head_that_never_ends_is_closed(served: int) -> None:
    socks = []
    for i in range(20):
        sock = socket.create_connection(("127.0.0.1", served), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-" + str(i).encode())
        socks.append(sock)
    try:
        assert all(_closed_by_server(s, 90) for s in socks)
    finally:
        for s in socks:
            s.close()


def test_a_connection_that_sends_nothing_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        assert _closed_by_server(sock, 90)


def test_a_body_that_stops_arriving_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user")
        assert _closed_by_server(sock, 90)


def _answer(sock: socket.socket, within_s: float = 60) -> bytes:
    """Everything the server sends until it closes ``sock``."""
    sock.settimeout(within_s)
    got = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_a_request_head_that_grows_without_end_is_refused(served: int) -> None:
    # httptools alone buffers a header of any length (64 MB for 64 MB); h11 stopped at 16 KiB.
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(64):
                sock.sendall(b"a" * 16384)
                time.sleep(0.01)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.endswith(b"Invalid HTTP request received."), answer[-200:]


def test_a_head_sent_in_pieces_and_pipelined_requests_are_answered(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        head = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 12000 + b"\r\n\r\n")
        for i in range(0, len(head), 1000):  # a large head, a piece at a time
            sock.sendall(head[i:i + 1000])
            time.sleep(0.01)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
                     + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _answer(sock)
    assert answer.count(b"HTTP/1.1 200 ") == 4, answer[:400]
