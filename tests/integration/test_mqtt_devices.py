"""Per-device MQTT against a second, real Mosquitto started with the ACL that
``coverwatch mqtt acl`` writes: a device publishes only to its own topic, the
server binds that topic to the device's officer, and one device cannot publish
for another (the broker drops it; a fix for another officer on its own topic is
refused by the server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from services import service_unavailable

from coverwatch.server.mqtt import device_topic
from coverwatch.server.mqttacl import SERVER_USER, write_acl
from serverkit import WallClock, base_settings, running_server, wait_until, write_site


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        service_unavailable("Mosquitto", "no mosquitto executable to start a second broker")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    import getpass

    # Run as the test's own user: as root, mosquitto would switch to "mosquitto",
    # who cannot read this test's 0600 password file.
    conf.write_text(
        f"user {getpass.getuser()}\n"
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
        f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
        f"log_dest file {tmp_path / 'mosquitto.log'}\n", encoding="utf-8")
    yield port, conf
    # The test starts the broker once the files exist; see _start.


def _start(conf: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the second mosquitto did not start")


def _client(port: int, user: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(client: mqtt.Client, topic: str, payload: Any) -> None:
    info = client.publish(topic, orjson.dumps(payload), qos=1)
    info.wait_for_publish(timeout=10)


def test_one_device_cannot_publish_for_another(tmp_path: Path,
                                               broker: tuple[int, Path]) -> None:
    port, conf = broker
    site_id = f"acl-{uuid.uuid4().hex[:8]}"
    clock = WallClock()
    files = write_acl({site_id: ["phone-a1", "phone-b2"]}, tmp_path / "passwd",
                      tmp_path / "acl")
    assert (tmp_path / "passwd").read_text().startswith(f"{SERVER_USER}:$7$101$")
    proc = _start(conf, port)
    try:
        pw = files.minted
        url = f"mqtt://{SERVER_USER}:{pw[SERVER_USER]}@127.0.0.1:{port}"
        settings = base_settings(write_site(tmp_path, site_id), tmp_path / "data", mqtt_url=url)
        with running_server(settings, clock) as kit:
            kit.svc.store.create_device("phone-a1", "A1")
            kit.svc.store.create_device("phone-b2", "B2")
            wait_until(lambda: kit.svc.mqtt_connected, what="the server to subscribe")
            a1 = _client(port, "phone-a1", pw["phone-a1"])
            try:
                fix = {"t": clock.iso(), "kind": "fix", "x": 1.0, "y": 2.0}
                # Its own topic: stored for its officer, accuracy from the site default.
                _publish(a1, device_topic(site_id, "phone-a1"), fix)
                stored = wait_until(lambda: kit.svc.store.events_since(0), what="the fix")
                assert [(e["officer"], e["device"], e["accuracy_source"]) for e in stored] == [
                    ("A1", "phone-a1", "default")]
                # Another device's topic: the broker's ACL drops it.
                _publish(a1, device_topic(site_id, "phone-b2"), {**fix, "x": 9.0})
                # Its own topic, but another officer: the server refuses it.
                _publish(a1, device_topic(site_id, "phone-a1"),
                         {**fix, "officer": "B2", "t": clock.iso(1)})
                wait_until(lambda: kit.svc.mqtt_rejected == 1, what="the refusal")
                # A later, good message shows the earlier ones were processed, not pending.
                _publish(a1, device_topic(site_id, "phone-a1"), {**fix, "t": clock.iso(2)})
                wait_until(lambda: len(kit.svc.store.events_since(0)) == 2, what="the last fix")
                rows = kit.svc.store.events_since(0)
                assert {e["officer"] for e in rows} == {"A1"}
                assert all(e["x"] != 9.0 for e in rows)
            finally:
                a1.disconnect()
                a1.loop_stop()
        # A wrong password is refused outright.
        bad = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder")
        bad.username_pw_set("phone-a1", "not-the-password")
        assert bad.connect("127.0.0.1", port) == 0  # CONNACK carries the refusal
        bad.loop_start()
        time.sleep(0.5)
        assert not bad.is_connected()
        bad.loop_stop()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rerunning_keeps_enrolled_passwords(tmp_path: Path) -> None:
    first = write_acl({"s": ["p1"]}, tmp_path / "passwd", tmp_path / "acl")
    again = write_acl({"s": ["p1", "p2"]}, tmp_path / "passwd", tmp_path / "acl")
    assert set(first.minted) == {SERVER_USER, "p1"} and set(again.minted) == {"p2"}
    rotated = write_acl({"s": ["p1", "p2"]}, tmp_path / "passwd", tmp_path / "acl",
                        rotate=["p1"])
    assert set(rotated.minted) == {"p1"}
    acl = (tmp_path / "acl").read_text()
    assert "user p2\ntopic write coverwatch/s/devices/p2/events" in acl
    with pytest.raises(ValueError):
        write_acl({"s": ["bad/name"]}, tmp_path / "passwd", tmp_path / "acl")
