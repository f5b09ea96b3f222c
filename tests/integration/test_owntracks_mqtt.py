"""OwnTracks over MQTT against the real Mosquitto at 127.0.0.1:1883.

The phone publishes to ``owntracks/<user>/<device>`` (QoS 1, retained, as
OwnTracks does); the server reads only the topics its explicit mapping names,
as the mapped device's officer. Topic names are unique per test.
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

from coverwatch.server.mqtt import client_id
from coverwatch.server.owntracks import parse_owntracks_map
from serverkit import Kit, WallClock, base_settings, running_server, wait_until, write_site

HOST, PORT = "127.0.0.1", 1883
URL = f"mqtt://{HOST}:{PORT}"


@pytest.fixture
def names(tmp_path: Path) -> Iterator[tuple[str, str]]:
    require_service("Mosquitto", HOST, PORT)
    suffix = uuid.uuid4().hex[:10]
    site, user = f"ot-test-{suffix}", f"user{suffix}"
    yield site, user
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cleanup-{suffix}")
    client.connect(HOST, PORT)
    client.loop_start()
    for device in ("phone", "tablet"):  # clear the retained messages we left
        client.publish(f"owntracks/{user}/{device}", b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    # Drop the server's persistent session.
    session = mqtt.Client(CallbackAPIVersion.VERSION2,
                          client_id=client_id(site, tmp_path / "data") + "-owntracks",
                          clean_session=True)
    session.connect(HOST, PORT)
    session.loop_start()
    session.disconnect()
    session.loop_stop()


def _publish(topic: str, payload: Any) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"phone-{uuid.uuid4().hex[:8]}")
    client.connect(HOST, PORT)
    client.loop_start()
    try:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = client.publish(topic, data, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _fixes(kit: Kit) -> list[dict[str, Any]]:
    return [r for r in kit.svc.store.events_since(0, limit=1000) if r["kind"] == "fix"]


def test_owntracks_topics_are_read_as_their_mapped_devices(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    site, user = names
    clock = WallClock()
    settings = base_settings(
        write_site(tmp_path, site), tmp_path / "data", mqtt_url=URL,
        owntracks_mqtt=parse_owntracks_map([f"{user}/phone=alice-phone"]))
    with running_server(settings, clock) as kit:
        kit.device("alice-phone", "A7")
        tst = clock() // 1_000_000
        # Retained, so it arrives even if published before the server subscribed.
        _publish(f"owntracks/{user}/phone", {"_type": "location", "lat": 51.5, "lon": -0.12,
                                             "tst": tst - 100, "acc": 5})
        wait_until(lambda: _fixes(kit), what="the OwnTracks subscription")
        location = {"_type": "location", "lat": 51.50005, "lon": -0.12003, "tst": tst,
                    "acc": 12, "batt": 80, "tid": "A7", "vel": 3, "cog": 90, "alt": 20,
                    "BSSID": "aa:bb", "conn": "m", "t": "u"}
        _publish(f"owntracks/{user}/phone", location)
        # Not mapped: never read, whatever it says.
        _publish(f"owntracks/{user}/tablet", {**location, "tst": tst + 1})
        _publish(f"owntracks/{user}/phone", {"_type": "lwt", "tst": tst})
        _publish(f"owntracks/{user}/phone", {"_type": "location", "lat": 51.5, "lon": -0.12,
                                             "tst": tst + 2})  # no acc
        wait_until(lambda: len(_fixes(kit)) >= 3, what="the OwnTracks fixes in the store")
        rows = _fixes(kit)[1:]
        assert [(r["officer"], r["device"], r["source"], r["accuracy"]) for r in rows] == [
            ("A7", "alice-phone", "owntracks", 12.0), ("A7", "alice-phone", "owntracks", 50.0)]
        assert [r["accuracy_source"] for r in rows] == ["reported", "default"]
        # Through the one device-report path: battery and the app's fields are kept.
        reports = kit.svc.store.device_reports("alice-phone")
        with_batt = [r for r in reports if r["battery"] is not None]
        assert with_batt and with_batt[0]["battery"] == 80.0
        assert (with_batt[0]["raw"]["tid"], with_batt[0]["raw"]["conn"]) == ("A7", "m")
        # The same location again (OwnTracks re-publishes): stored once.
        _publish(f"owntracks/{user}/phone", location)
        _publish(f"owntracks/{user}/phone", {**location, "tst": tst + 3})
        wait_until(lambda: len(_fixes(kit)) == 4, what="the marker fix")
        assert kit.svc.duplicates_total == 1

