"""Hostile HTTP against a real `coverwatch serve` process (issue 9).

* a 100 MB body to every public route, declared or chunked, is refused with
  413 and the server's memory does not grow by more than 50 MB;
* X-Forwarded-For is ignored unless the peer is a configured trusted proxy;
* failed logins slow the guesser (per username and address) but never lock
  the real user out from elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from coverwatch.http.access import LoginLimiter
from coverwatch.storage import open_store
from serverkit import PASSWORD, YARD, FakeClock, base_settings, live_server, wait_until

MB = 1024 * 1024
PUBLIC = [("POST", "/api/v1/login"), ("POST", "/osmand"), ("GET", "/osmand"),
          ("POST", "/owntracks"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"),
          ("GET", "/static/app.css")]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, field: str) -> int:
        """A memory figure of the server process from /proc (bytes)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc status")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(tmp: Path, **env: str) -> Iterator[Served]:
    store = open_store(None, tmp)
    store.create_user("root", PASSWORD, ["admin"])
    store.create_user("sam", PASSWORD, ["supervisor"])
    store.close()
    port = _free_port()
    src = str(Path(__file__).resolve().parents[2] / "src")
    environ = {**os.environ, **env,
               "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from coverwatch.cli import main; main()", "serve",
         "--site", str(YARD), "--data-dir", str(tmp), "--port", str(port)],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    served = Served(proc, port)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(served.url + "/readyz", timeout=10).status_code == 200
        return False

    try:
        wait_until(up, timeout_s=60, what="coverwatch serve to start")
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def huge_request(port: int, method: str, path: str, *, chunked: bool,
                 total: int = 100 * MB) -> int:
    """Send ``total`` bytes of body (or as much as the server takes); return the status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n")
    reply = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    block = b"[" * MB
    piece = (b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block
    try:
        sock.sendall(head.encode())
        for _ in range(total // MB):
            sock.sendall(piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server refused and closed: what we want
    reader.join(30)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 "), bytes(reply[:200])
    return int(reply[9:12])


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {k: "" for k in ("COVERWATCH_TRUSTED_PROXIES",) if k in os.environ}
    with serve(tmp_path_factory.mktemp("hostile"), **env) as served:
        yield served


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_to_every_public_route_is_413_and_memory_stays_flat(
    default_server: Served, chunked: bool
) -> None:
    for method, path in PUBLIC:  # warm up each route once
        httpx.request(method, default_server.url + path, timeout=60)
    rss0, peak0 = default_server.status("VmRSS"), default_server.status("VmHWM")
    for method, path in PUBLIC:
        status = huge_request(default_server.port, method, path, chunked=chunked)
        assert status == 413, (method, path, status)
    rss1, peak1 = default_server.status("VmRSS"), default_server.status("VmHWM")
    assert rss1 - rss0 < 50 * MB, (rss0, rss1)
    assert peak1 < max(peak0, rss0) + 50 * MB, (rss0, peak0, peak1)
    # The problem body names the limit.
    r = httpx.post(default_server.url + "/api/v1/login", content=b"x" * (65 * 1024),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["message"] == "at most 65536 bytes are accepted here"


LOGIN_S = 120.0


def _login_remote(served: Served, forwarded: str) -> str:
    """Log in as sam with an X-Forwarded-For header; the address the audit log recorded.

    The server hashes passwords in its lowest-priority thread with the product's argon2
    cost: on a machine busy with the rest of the suite a login may take longer than
    httpx's 5 s default, which is not what these tests check."""
    r = httpx.post(served.url + "/api/v1/login", headers={"X-Forwarded-For": forwarded},
                   json={"username": "sam", "password": PASSWORD}, timeout=LOGIN_S)
    assert r.status_code == 200, r.text
    root = httpx.post(served.url + "/api/v1/login",
                      json={"username": "root", "password": PASSWORD}, timeout=LOGIN_S)
    entries = httpx.get(served.url + "/api/v1/audit", params={"limit": 1000},
                        cookies=root.cookies, timeout=LOGIN_S).json()["entries"]
    (last,) = [e for e in entries if e["actor"] == "sam"][-1:]
    remote: str = last["details"]["remote"]
    return remote


def test_forwarded_for_is_ignored_by_default(default_server: Served) -> None:
    assert _login_remote(default_server, "203.0.113.9") == "127.0.0.1"


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path: Path) -> None:
    with serve(tmp_path, COVERWATCH_TRUSTED_PROXIES="127.0.0.0/8, 10.0.0.0/8") as served:
        assert _login_remote(served, "203.0.113.9") == "203.0.113.9"
        # A client's own forged entry is left of what the proxies appended.
        assert _login_remote(served, "198.51.100.1, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
        assert _login_remote(served, "not-an-address") == "127.0.0.1"



def test_failed_logins_slow_the_guesser_but_never_lock_the_user_out(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = base_settings(YARD, tmp_path, trusted_proxies=("127.0.0.1",))
    with live_server(settings, clock) as served:
        served.svc.store.create_user("sam", PASSWORD, ["supervisor"])
        now = [0.0]
        served.app.state.login_limiter = LoginLimiter(10, clock=lambda: now[0])

        def attempt(address: str, password: str) -> httpx.Response:
            return httpx.post(served.url + "/api/v1/login",
                              headers={"X-Forwarded-For": address},
                              json={"username": "sam", "password": password})

        # A guesser spread over 12 addresses never locks sam out at their own.
        for i in range(12):
            assert attempt(f"192.0.2.{i + 1}", "wrong").status_code == 401
        assert attempt("198.51.100.50", PASSWORD).status_code == 200
        # From one address: 5 free failures, then a wait that doubles.
        assert [attempt("192.0.2.200", "wrong").status_code for _ in range(6)] == [401] * 6
        r = attempt("192.0.2.200", PASSWORD)  # even the right password waits
        assert (r.status_code, r.headers["retry-after"]) == (429, "1")
        now[0] += 1.0
        assert attempt("192.0.2.200", "wrong").status_code == 401
        r = attempt("192.0.2.200", "wrong")
        assert (r.status_code, r.headers["retry-after"]) == (429, "2")
        assert r.headers["content-type"] == "application/problem+json"
        assert attempt("198.51.100.50", PASSWORD).status_code == 200
        now[0] += 2.0
        assert attempt("192.0.2.200", PASSWORD).status_code == 200
