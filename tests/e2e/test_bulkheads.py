"""Bulkheads: the SOS path never waits behind anything (issue 19).

Every blocking call used to share asyncio's default pool of about six threads:
a login flood (argon2 at 64 MiB each) or notification sends sleeping through
their retry back-off left a device's SOS waiting for a thread. Now database
writes, password checks, notifications and device alarms each have their own
bounded pool; password checks beyond a small queue get 429 at once; retries
wait on the event loop. No timing is asserted: each test shows that something
completes while the shared pool is held, where before it waited for it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from coverwatch.domain.alerts import Escalation
from coverwatch.notify.notifier import Notifier
from coverwatch.server import pools
from coverwatch.storage.store import Store
from serverkit import FakeClock, LiveServer, base_settings, live_server, wait_until, write_site

ESCALATION = """escalation:
  default:
    - after_s: 0
      notify: [supervisor]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    site = write_site(tmp_path, extra=ESCALATION)
    with live_server(base_settings(site, tmp_path / "data"), FakeClock()) as s:
        yield s


def test_an_sos_is_stored_and_answered_while_the_shared_pool_is_held(
    server: LiveServer,
) -> None:
    _, token = server.svc.store.create_device("phone-a1", "A1")
    release = threading.Event()
    loop = _server_loop(server)
    for _ in range(64):  # more than the default pool's threads
        loop.call_soon_threadsafe(loop.run_in_executor, None, release.wait)
    try:
        r = httpx.get(f"{server.url}/osmand", timeout=60, params={
            "id": token, "alarm": "sos", "valid": "false",
            "timestamp": str(server.clock() // 1_000_000)})
        assert r.status_code == 200, r.text
        assert any(a.kind == "sos" for a in server.svc.book.alerts())
    finally:
        release.set()


def _server_loop(server: LiveServer) -> asyncio.AbstractEventLoop:
    """The running uvicorn server's event loop (the only loop running in this process)."""
    import gc

    (loop,) = {obj for obj in gc.get_objects()
               if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running()}
    return loop


def test_password_checks_beyond_the_queue_get_429_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-address limit out of the way: the queue alone must refuse the excess.
    settings = base_settings(write_site(tmp_path), tmp_path / "data",
                             login_attempts_per_minute=10_000)
    with live_server(settings, FakeClock()) as server:
        _logins_beyond_the_queue(server, monkeypatch)


def _logins_beyond_the_queue(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_check(self: Store, record: Any, password: str) -> Any:
        started.release()
        release.wait(60)
        return None

    monkeypatch.setattr(Store, "match_password", slow_check)
    many = pools.PASSWORD_THREADS + pools.PASSWORD_QUEUE + 3
    answers: list[httpx.Response] = []

    def login(k: int) -> None:
        answers.append(httpx.post(f"{server.url}/api/v1/login", timeout=90, json={
            "username": f"user{k}", "password": "wrong"}))

    threads = [threading.Thread(target=login, args=(k,)) for k in range(many)]
    for t in threads:
        t.start()
    try:
        # While the checks are held, the ones beyond the queue are answered already.
        refused = wait_until(lambda: [a for a in list(answers) if a.status_code == 429],
                             timeout_s=60, what="a 429 for a login beyond the queue")
        assert int(refused[0].headers["Retry-After"]) >= 1
    finally:
        release.set()
        for t in threads:
            t.join(90)
    assert sorted({a.status_code for a in answers}) == [401, 429]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_password_checks_run_at_the_lowest_cpu_priority_and_so_do_their_threads() -> None:
    # argon2 starts a thread per lane: a new thread inherits its creator's nice value.
    def priorities() -> tuple[int, int]:
        seen: list[int] = []
        lane = threading.Thread(target=lambda: seen.append(
            os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        lane.start()
        lane.join()
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), seen[0]

    assert asyncio.run(pools.check_password(priorities)) == (19, 19)
    # Other pools keep the normal priority (the commits must win).
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    assert asyncio.run(pools.in_store(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))) == normal


def test_the_password_thread_never_holds_the_database(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A starved low-priority thread holding a connection or the write lock would make the
    # commits wait for it: only the hashing runs there.
    store = server.svc.store
    store.password_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    store.create_user("sam", "correct horse", ["supervisor"])
    store.password_hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    threads: dict[str, set[str]] = {}

    def noted(name: str) -> Any:
        real = getattr(Store, name)

        def call(self: Store, *args: Any) -> Any:
            threads.setdefault(name, set()).add(threading.current_thread().name)
            return real(self, *args)
        return call

    for name in ("password_record", "match_password", "renew_password_hash", "_write"):
        monkeypatch.setattr(Store, name, noted(name))
    r = httpx.post(f"{server.url}/api/v1/login", timeout=60,
                   json={"username": "sam", "password": "correct horse"})
    assert r.status_code == 200, r.text
    assert {t[:len("cw-passwords")] for t in threads["match_password"]} == {"cw-passwords"}
    # The parameters were raised: the renewed hash is written, outside the password pool.
    assert "renew_password_hash" in threads
    assert not any(t.startswith("cw-passwords") for name in
                   ("password_record", "renew_password_hash", "_write") for t in threads[name])
    assert "t=2" in str(store.password_record("sam").stored)


def test_notification_retries_never_sleep_in_a_thread() -> None:
    def no_thread_sleep(seconds: float) -> None:
        raise AssertionError("slept in a pool thread")

    notifier = Notifier(lambda target: [], webhook_secret="s", retries=2, backoff_s=0.05,
                        timeout_s=2.0, sleep=no_thread_sleep)
    step = Escalation(alert_id="lapse-1", level=0, targets=("signed+http://127.0.0.1:9/hook",),
                      due_at=0, at=0, kind="lapse", post="gate", rule="cover", lapse_start=0,
                      alert_at=0, count=0, need=1)
    (delivery,) = asyncio.run(notifier.send(step))
    assert not delivery.ok and delivery.attempts == 3
    assert "slept" not in (delivery.error or "")
