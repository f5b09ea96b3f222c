"""MQTT ingestion against a real Mosquitto at 127.0.0.1:1883.

Events published with QoS 1 to ``coverwatch/<site>/events`` are stored; a bad
message does not block the ones after it; and messages published while the
server is stopped reach the store once it is back (persistent session), which
is how "reconnects lose nothing the broker delivered with QoS 1" is met; a
commit that fails acknowledges nothing, so the broker redelivers it.
Each test uses its own site id, so retained sessions never cross tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from services import require_service

from coverwatch.errors import StoreError
from coverwatch.server import mqtt as mqtt_consumer
from coverwatch.server.mqtt import client_id, topic_for
from coverwatch.server.unit import SiteUnit
from coverwatch.storage import open_store
from serverkit import Kit, WallClock, base_settings, running_server, wait_until, write_site

HOST, PORT = "127.0.0.1", 1883
URL = f"mqtt://{HOST}:{PORT}"


@pytest.fixture
def site_id(tmp_path: Path) -> Iterator[str]:
    require_service("Mosquitto", HOST, PORT)
    site = f"mqtt-test-{uuid.uuid4().hex[:10]}"
    yield site
    # Drop the server's persistent session from the broker.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id(site, tmp_path / "data"),
                         clean_session=True)
    client.connect(HOST, PORT)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


class Publisher:
    """A paho client publishing with QoS 1 and waiting for each PUBACK."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(HOST, PORT)
        self.client.loop_start()

    def send(self, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(self.topic, data, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _fix(clock: WallClock, officer: str, x: float, offset_s: float = 0.0) -> dict[str, Any]:
    return {"t": clock.iso(offset_s), "kind": "fix", "officer": officer, "x": x, "y": 0.0}


def _stored(kit: Kit) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = kit.svc.store.events_since(0, limit=10_000)
    return rows


def test_mqtt_events_are_stored_and_bad_messages_skipped(tmp_path: Path, site_id: str) -> None:
    clock = WallClock()
    settings = base_settings(write_site(tmp_path, site_id), tmp_path / "data", mqtt_url=URL)
    with running_server(settings, clock) as kit:
        wait_until(lambda: kit.svc.mqtt_connected, what="the server's MQTT subscription")
        pub = Publisher(topic_for(site_id))
        try:
            pub.send(_fix(clock, "A1", 1.0))
            pub.send([_fix(clock, "A2", 2.0), _fix(clock, "A3", 3.0)])
            pub.send({"events": [_fix(clock, "A4", 4.0)]})
            pub.send(b"{not json")
            pub.send([{"t": clock.iso(), "kind": "fix", "officer": "A5", "x": "far", "y": 0}])
            pub.send([_fix(clock, "A6", 6.0)])
            wait_until(lambda: len(_stored(kit)) >= 5, what="the MQTT events in the store")
            wait_until(lambda: kit.svc.mqtt_rejected >= 2, what="the bad messages counted")
        finally:
            pub.close()
        rows = _stored(kit)
        assert sorted(r["officer"] for r in rows) == ["A1", "A2", "A3", "A4", "A6"]
        assert {r["source"] for r in rows} == {"mqtt"}
        assert kit.svc.mqtt_rejected == 2
        # Re-publishing the same events stores nothing new.
        pub = Publisher(topic_for(site_id))
        try:
            pub.send(rows[0]["raw"])
            pub.send({"events": [_fix(clock, "A7", 7.0)]})
            wait_until(lambda: len(_stored(kit)) == 6, what="the marker event")
        finally:
            pub.close()
        assert len(_stored(kit)) == 6
        assert kit.svc.duplicates_total == 1


def test_messages_published_while_the_server_is_down_are_delivered(
    tmp_path: Path, site_id: str
) -> None:
    clock = WallClock()
    settings = base_settings(write_site(tmp_path, site_id), tmp_path / "data", mqtt_url=URL)
    with running_server(settings, clock) as kit:
        wait_until(lambda: kit.svc.mqtt_connected, what="the server's MQTT subscription")
        pub = Publisher(topic_for(site_id))
        try:
            pub.send(_fix(clock, "A1", 1.0))
            wait_until(lambda: len(_stored(kit)) == 1, what="the first event")
        finally:
            pub.close()
    # The server is stopped; the broker keeps QoS 1 messages for its session.
    pub = Publisher(topic_for(site_id))
    try:
        for i in range(20):
            pub.send(_fix(clock, f"B{i}", float(i)))
    finally:
        pub.close()
    with running_server(settings, clock) as kit:
        wait_until(lambda: len(_stored(kit)) == 21, what="the events published while down")
        officers = sorted(r["officer"] for r in _stored(kit))
        assert officers == sorted(["A1"] + [f"B{i}" for i in range(20)])


def test_messages_whose_commit_failed_are_redelivered(
    tmp_path: Path, site_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's queued messages arrive right after CONNACK; none may be
    acknowledged before it is stored (paho acks on its own unless manual
    acknowledgement is on before connecting)."""
    clock = WallClock()
    settings = base_settings(write_site(tmp_path, site_id), tmp_path / "data", mqtt_url=URL)
    with running_server(settings, clock) as kit:
        wait_until(lambda: kit.svc.mqtt_connected, what="the server's MQTT subscription")
    pub = Publisher(topic_for(site_id))
    try:
        for i in range(30):
            pub.send(_fix(clock, f"B{i}", float(i)))
    finally:
        pub.close()
    attempts: list[int] = []

    async def failing_ingest(svc: SiteUnit, rows: Any, **kwargs: Any) -> Any:
        attempts.append(len(rows))
        raise StoreError("the disk is full (test)")

    # Every commit fails: the consumer receives the messages, stores none, reconnects.
    with monkeypatch.context() as m:
        m.setattr(mqtt_consumer, "ingest", failing_ingest)  # the consumer's way into the unit
        with running_server(settings, clock) as kit:
            wait_until(lambda: len(attempts) >= 2, what="two failed commits")
    assert sum(attempts) >= 1
    # Nothing stored while every commit failed: read before a server runs, since the next
    # one's session gets the queued messages at its CONNACK and may store them at once.
    store = open_store(None, tmp_path / "data")
    try:
        assert store.events_since(0, limit=10_000) == []
    finally:
        store.close()
    with running_server(settings, clock) as kit:
        # Delivery is in order: once the marker is stored, so is everything before it.
        pub = Publisher(topic_for(site_id))
        try:
            pub.send(_fix(clock, "Z", 99.0))
        finally:
            pub.close()
        wait_until(lambda: any(r["officer"] == "Z" for r in _stored(kit)), what="the marker")
        officers = sorted(r["officer"] for r in _stored(kit))
    assert officers == sorted([f"B{i}" for i in range(30)] + ["Z"])
