"""A message the server cannot store never stops MQTT ingestion (issue 19, F1).

A device's ``alarm`` event with an extra field nested 300 deep, published once
on its own topic, used to fail every group commit it joined; the consumer
restarted, the broker redelivered it, for ever (across restarts), and no other
fix of the site was stored. Now it is kept as a dead letter, acknowledged, and
listed to admins; the fixes after it are stored, and a restart does not bring
it back. Against the shared Mosquitto at 127.0.0.1:1883.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from services import require_service
from test_mqtt import Publisher

from coverwatch.server.mqtt import device_topic
from serverkit import Kit, WallClock, base_settings, running_server, wait_until, write_site

HOST, PORT = "127.0.0.1", 1883
URL = f"mqtt://{HOST}:{PORT}"


@pytest.fixture
def site_id() -> Iterator[str]:
    require_service("Mosquitto", HOST, PORT)
    site = f"dead-letter-{uuid.uuid4().hex[:10]}"
    yield site
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"coverwatch-{site}",
                         clean_session=True)
    client.connect(HOST, PORT)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def _deep(n: int = 300) -> str:
    return '{"a":' * n + "1" + "}" * n  # JSON that orjson reads but cannot write back


def _fixes(kit: Kit) -> list[str]:
    return sorted(r["officer"] + str(r["x"]) for r in kit.svc.store.events_since(0))


def test_a_poison_message_is_a_dead_letter_and_the_site_keeps_ingesting(
    tmp_path: Path, site_id: str
) -> None:
    clock = WallClock()
    settings = base_settings(write_site(tmp_path, site_id), tmp_path / "data", mqtt_url=URL)
    with running_server(settings, clock) as kit:
        kit.svc.store.create_device("phone-a1", "A1")
        wait_until(lambda: kit.svc.mqtt_connected, what="the server's MQTT subscription")
        pub = Publisher(device_topic(site_id, "phone-a1"))
        try:
            pub.send(f'{{"t": "{clock.iso()}", "kind": "alarm", "alarm": "sos", '
                     f'"extra": {_deep()}}}'.encode())
            for i in range(5):
                pub.send({"t": clock.iso(0.1 * i), "kind": "fix", "x": float(i), "y": 0.0})
            wait_until(lambda: len(_fixes(kit)) == 5, what="the fixes after the poison")
        finally:
            pub.close()
        wait_until(lambda: kit.svc.store.count_dead_letters() == 1, what="the dead letter")
        admin = kit.user("root", "admin")
        r = kit.request(admin, "GET", "/api/v1/dead-letters")
        assert r.status_code == 200, r.text
        (letter,) = r.json()["dead_letters"]
        assert letter["source"] == "mqtt" and "16 deep" in letter["reason"]
        assert letter["topic"] == device_topic(site_id, "phone-a1")
        assert letter["payload"].startswith('{"t": ')
        supervisor = kit.user("sup", "supervisor")
        assert kit.request(supervisor, "GET", "/api/v1/dead-letters").status_code == 403
        assert any(e.action == "dead-letter.kept" for e in kit.svc.store.audit_entries(0, 1000))
    # Acknowledged: a restart does not bring it back, and ingestion goes on.
    with running_server(settings, clock) as kit:
        wait_until(lambda: kit.svc.mqtt_connected, what="the server's MQTT subscription")
        pub = Publisher(device_topic(site_id, "phone-a1"))
        try:
            pub.send({"t": clock.iso(1), "kind": "fix", "x": 9.0, "y": 0.0})
            wait_until(lambda: len(_fixes(kit)) == 6, what="the marker fix")
        finally:
            pub.close()
        assert kit.svc.store.count_dead_letters() == 1
        assert kit.svc.dead_letters == 0
