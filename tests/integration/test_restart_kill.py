"""Restart without loss: a real `coverwatch serve` process is SIGKILLed mid-stream.

A sender streams officers' fixes in real time through the HTTP API, retrying
any batch the server did not acknowledge. Half-way through, the server is
killed with SIGKILL and started again on the same data directory. Afterwards
every acknowledged event must be stored exactly once, no alert may be raised
twice, and the alerts and lapses must be those of an uninterrupted run (a
replay of the same events up to the live horizon).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from coverwatch.domain.events import OfficerRegistry
from coverwatch.domain.storedrows import batch_from_rows
from coverwatch.domain.time import US_PER_S, format_time, parse_time
from coverwatch.formats.sitefile import load_site_document
from coverwatch.reports.replay import replay_sorted
from coverwatch.storage import open_store

pytestmark = pytest.mark.slow

SITE = """\
# Test Depot: a FICTIONAL site for the restart test. It models no real place.
site: test-depot
name: Test Depot (fictional)
timezone: UTC
stale_after_s: 3
flags:
  drill: false
posts:
  - id: north
    at: [0, 0]
    rules:
      - {id: pair, need: 2, within_m: 20, grace_s: 1.5, when: drill}
  - id: east
    at: [300, 0]
    rules:
      - {id: single, need: 1, within_m: 20, grace_s: 1, when: drill}
  - id: west
    at: [-300, 0]
    rules:
      - {id: single, need: 1, within_m: 20, grace_s: 2, when: drill}
"""

HZ = 4  # fixes per officer per second
DURATION_S = 30.0  # event time of the last fix, from the stream's start
DRILL_OFF_S = 28.0
KILL_AT_S = 11.0
DOWN_S = 1.5
SEND_EVERY_S = 0.2

# Where each officer's post is; away from it is 100 m out to the south.
HOME = {"O1": (0.0, 0.0), "O2": (0.0, 5.0), "O3": (300.0, 0.0), "O4": (-300.0, 0.0)}
# Intervals (s from the start) an officer is away from their post.
AWAY = {"O1": [(5.0, 8.5), (24.0, 25.0)], "O4": [(17.0, 21.0)]}
# Intervals a device sends nothing (the phone fell silent).
SILENT = {"O3": [(8.0, 14.0)]}
ROVERS = ("O5", "O6", "O7")


def _position(officer: str, s: float) -> tuple[float, float]:
    if officer in ROVERS:
        phase = ROVERS.index(officer) * 2.0
        a = s / 6.0 + phase
        return (round(120 * math.cos(a), 3), round(200 + 120 * math.sin(a), 3))
    x, y = HOME[officer]
    if any(lo <= s < hi for lo, hi in AWAY.get(officer, [])):
        y -= 100.0
    # A little jitter, deterministic.
    return (round(x + 2.0 * math.sin(s * 3.1), 3), round(y + 2.0 * math.cos(s * 2.3), 3))


def _schedule(t0: int) -> list[tuple[int, str | None, dict[str, Any]]]:
    """Every event to send: (event time, officer or None for control, record)."""
    out: list[tuple[int, str | None, dict[str, Any]]] = []
    officers = [*HOME, *ROVERS]
    out.append((t0, None, {"t": format_time(t0), "kind": "flag", "flag": "drill", "on": True}))
    for o in officers:
        out.append((t0, None, {"t": format_time(t0), "kind": "duty", "officer": o, "on": True}))
    step = US_PER_S // HZ
    for i in range(int(DURATION_S * HZ) + 1):
        s = i / HZ
        for k, o in enumerate(officers):
            t = t0 + i * step + 1000 * (k + 1)  # distinct instants per officer
            if any(lo <= s < hi for lo, hi in SILENT.get(o, [])):
                continue
            x, y = _position(o, s)
            out.append(
                (
                    t,
                    o,
                    {
                        "t": format_time(t),
                        "kind": "fix",
                        "officer": o,
                        "x": x,
                        "y": y,
                        "accuracy_m": 5,
                    },
                )
            )
    t_off = t0 + int(DRILL_OFF_S * US_PER_S)
    out.append(
        (t_off, None, {"t": format_time(t_off), "kind": "flag", "flag": "drill", "on": False})
    )
    out.sort(key=lambda e: e[0])
    return out


def _key(rec: dict[str, Any]) -> str:
    ident = rec.get("officer") or rec.get("flag") or rec.get("post")
    return f"{rec['kind']}|{ident}|{parse_time(rec['t'])}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`coverwatch serve` as a child process."""

    def __init__(self, site: Path, data_dir: Path, port: int, log: Path) -> None:
        self.cmd = [
            str(Path(sys.executable).parent / "coverwatch"),
            "serve",
            "--site",
            str(site),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--recovery-s",
            "10",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Sender(threading.Thread):
    """Sends due events every SEND_EVERY_S; retries each batch until it is acknowledged."""

    def __init__(
        self,
        url: str,
        schedule: list[tuple[int, str | None, dict[str, Any]]],
        tokens: dict[str | None, str],
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.schedule = schedule
        self.tokens = tokens
        self.acked: list[dict[str, Any]] = []
        self.late = 0
        self.retries = 0
        self.error: str | None = None

    def _post(self, client: httpx.Client, who: str | None, records: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = client.post(
                    self.url + "/api/v1/events",
                    json=records,
                    headers={"Authorization": f"Bearer {self.tokens[who]}"},
                )
            except httpx.TransportError:
                r = None
            if r is not None and 200 <= r.status_code < 300:
                self.late += int(r.json()["late"])
                self.acked.extend(records)
                return
            if r is not None and 400 <= r.status_code < 500:
                raise AssertionError(f"batch refused: {r.status_code} {r.text}")
            if time.monotonic() > deadline:
                raise AssertionError("server did not come back within 30 s")
            self.retries += 1
            time.sleep(0.1)

    def run(self) -> None:
        try:
            with httpx.Client(timeout=5.0) as client:
                i = 0
                while i < len(self.schedule):
                    now = time.time_ns() // 1000
                    due: dict[str | None, list[dict[str, Any]]] = {}
                    while i < len(self.schedule) and self.schedule[i][0] <= now:
                        _, who, rec = self.schedule[i]
                        due.setdefault(who, []).append(rec)
                        i += 1
                    # Control first (duty before the first fixes), then each device.
                    for who in sorted(due, key=lambda w: (w is not None, w or "")):
                        self._post(client, who, due[who])
                    time.sleep(SEND_EVERY_S)
        except BaseException as e:  # reported by the test
            self.error = repr(e)


def test_sigkill_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    site_path = tmp_path / "site.yaml"
    site_path.write_text(SITE)
    data_dir = tmp_path / "data"
    exe = Path(sys.executable).parent / "coverwatch"
    env = {**os.environ, "COVERWATCH_PASSWORD": "supervisor-pass-123"}
    subprocess.run(
        [str(exe), "users", "add", "sup", "--roles", "supervisor", "--data-dir", str(data_dir)],
        check=True,
        env=env,
        capture_output=True,
    )
    tokens: dict[str | None, str] = {}
    for o in [*HOME, *ROVERS]:
        done = subprocess.run(
            [str(exe), "devices", "add", f"phone-{o}", "--officer", o, "--data-dir", str(data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        tokens[o] = done.stdout.strip().splitlines()[-1]
    store = open_store(None, data_dir)
    try:
        _, tokens[None] = store.create_api_token("control-room", ["ingest"])
    finally:
        store.close()

    server = Server(site_path, data_dir, _free_port(), tmp_path / "server.log")
    server.start()
    try:
        t0 = (time.time_ns() // 1000) + 300_000
        schedule = _schedule(t0)
        sender = Sender(server.url, schedule, tokens)
        sender.start()
        while time.time_ns() // 1000 < t0 + int(KILL_AT_S * US_PER_S):
            assert sender.is_alive(), sender.error
            time.sleep(0.05)
        server.kill()
        time.sleep(DOWN_S)
        server.start()
        sender.join(timeout=DURATION_S + 40)
        assert not sender.is_alive(), "sender did not finish"
        assert sender.error is None, sender.error
        assert sender.retries > 0, "the kill did not interrupt the stream"
        assert sender.late == 0, "the restarted server flagged re-sent events as late"

        # Wait until the live horizon has passed every event.
        last_t = max(e[0] for e in schedule)
        client = httpx.Client(base_url=server.url, timeout=5.0)
        login = client.post(
            "/api/v1/login", json={"username": "sup", "password": "supervisor-pass-123"}
        )
        assert login.status_code == 200, login.text
        deadline = time.monotonic() + 40
        while True:
            body = client.get("/api/v1/lapses").json()
            horizon = parse_time(body["horizon"])
            if horizon > last_t + 500_000:
                break
            assert time.monotonic() < deadline, f"horizon stuck at {body['horizon']}"
            time.sleep(0.1)
        live_lapses = body["lapses"]
        client.close()
    finally:
        server.stop()

    store = open_store(None, data_dir)
    try:
        rows = store.events_between(0, 2**62)
        alerts = store.load_alerts()
        audit = store.audit_entries(limit=1_000_000)
    finally:
        store.close()

    # (1) Every acknowledged event is stored exactly once, and nothing else is.
    acked = {_key(r): r for r in sender.acked}
    # The store's key also names the device and a digest of the content.
    stored = Counter(r["key"].rsplit("|", 2)[0] for r in rows)
    assert [k for k, n in stored.items() if n > 1] == []
    assert set(stored) == set(acked)
    for r in rows:
        if r["kind"] == "fix":
            sent = acked[r["key"].rsplit("|", 2)[0]]
            assert (r["x"], r["y"]) == (sent["x"], sent["y"])
    assert not any(r["late"] for r in rows)

    # (2) No alert raised twice.
    alert_keys = [(a["post"], a["rule"], a["lapse_start"]) for a in alerts]
    assert len(alert_keys) == len(set(alert_keys))
    raised = Counter(e.subject for e in audit if e.action == "alert.raised")
    assert sorted(raised) == sorted(f"alert:{a['id']}" for a in alerts)
    assert all(n == 1 for n in raised.values()), raised

    # (3) Alerts and lapses are those of an uninterrupted run to the same horizon.
    site = load_site_document(site_path).site
    batch = batch_from_rows(rows, OfficerRegistry(), scan_growth=1.5)
    expected = replay_sorted(site, [batch], until=horizon - 1)
    from coverwatch.reports.replay import lapse_record

    assert live_lapses == [lapse_record(lp) for lp in expected.lapses]
    expected_alerts = sorted(
        (lp.post, lp.rule, lp.start, lp.alert_at)
        for lp in expected.lapses
        if lp.alert_at is not None
    )
    got_alerts = sorted((a["post"], a["rule"], a["lapse_start"], a["alert_at"]) for a in alerts)
    assert got_alerts == expected_alerts
    # The scenario is built to produce alerts at all three posts, one across the kill.
    assert {a[0] for a in got_alerts} == {"north", "east", "west"}
    assert any(lp["alert_at"] is None for lp in live_lapses)
