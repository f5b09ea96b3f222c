"""`coverwatch mqtt acl` for a deployment (issue 19, F7): one password file and
one ACL for every site, each device allowed only its own site's topic, checked
against a real Mosquitto started with the files.

On the old code the command took one site, gave every device of the deployment
that site's topic, and rewrote both files whole: a second site's run took the
first site's access away, and a device of one site could publish to another's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from test_mqtt_devices import _client, _publish, _start, broker  # noqa: F401 (a fixture)

from coverwatch.server.mqtt import device_topic
from coverwatch.server.mqttacl import SERVER_USER, write_acl
from coverwatch.storage import open_store
from serverkit import write_site

ROOT = Path(__file__).resolve().parents[2]
NORTH, SOUTH = "north-yard", "south-quay"


def test_each_device_may_publish_only_on_its_own_sites_topic(
        tmp_path: Path, broker: tuple[int, Path]) -> None:  # noqa: F811
    port, conf = broker
    files = write_acl({NORTH: ["phone-n1"], SOUTH: ["phone-s1"]}, tmp_path / "passwd",
                      tmp_path / "acl")
    pw = files.minted
    assert set(pw) == {SERVER_USER, "phone-n1", "phone-s1"}
    proc = _start(conf, port)
    got: list[tuple[str, bytes]] = []
    done = threading.Event()
    try:
        server = _client(port, SERVER_USER, pw[SERVER_USER])
        subscribed = threading.Event()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            got.append((msg.topic, msg.payload))
            if msg.payload == b'"last"':
                done.set()

        server.on_message = on_message
        server.on_subscribe = lambda *_: subscribed.set()
        for site in (NORTH, SOUTH):
            server.subscribe(f"coverwatch/{site}/#", qos=1)
        assert subscribed.wait(10)
        n1, s1 = _client(port, "phone-n1", pw["phone-n1"]), _client(port, "phone-s1",
                                                                      pw["phone-s1"])
        try:
            _publish(n1, device_topic(NORTH, "phone-n1"), "n1 at north")
            _publish(n1, device_topic(SOUTH, "phone-n1"), "n1 at south")  # dropped
            _publish(s1, device_topic(NORTH, "phone-s1"), "s1 at north")  # dropped
            _publish(s1, device_topic(SOUTH, "phone-s1"), "s1 at south")
            _publish(n1, device_topic(NORTH, "phone-n1"), "last")
            assert done.wait(20), got
        finally:
            for c in (n1, s1, server):
                c.disconnect()
                c.loop_stop()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [(t, orjson.loads(p)) for t, p in got] == [
        (device_topic(NORTH, "phone-n1"), "n1 at north"),
        (device_topic(SOUTH, "phone-s1"), "s1 at south"),
        (device_topic(NORTH, "phone-n1"), "last")]


def test_the_acl_names_each_devices_own_site(tmp_path: Path) -> None:
    write_acl({NORTH: ["phone-n1", "phone-n2"], SOUTH: ["phone-s1"]}, tmp_path / "passwd",
              tmp_path / "acl")
    acl = (tmp_path / "acl").read_text()
    assert (f"user {SERVER_USER}\ntopic read coverwatch/{NORTH}/#\n"
            f"topic read coverwatch/{SOUTH}/#\n") in acl
    for site, device in ((NORTH, "phone-n1"), (NORTH, "phone-n2"), (SOUTH, "phone-s1")):
        assert f"user {device}\ntopic write coverwatch/{site}/devices/{device}/events\n" in acl
    assert acl.count("topic write") == 3
    assert oct((tmp_path / "passwd").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="two sites"):
        write_acl({NORTH: ["phone-x"], SOUTH: ["phone-x"]}, tmp_path / "passwd", tmp_path / "acl")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", "from coverwatch.cli import main; main()", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120)


def test_the_command_writes_every_sites_devices_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "n").mkdir()
    (tmp_path / "s").mkdir()
    north, south = write_site(tmp_path / "n", NORTH), write_site(tmp_path / "s", SOUTH)
    for site, device, officer in ((NORTH, "phone-n1", "N1"), (SOUTH, "phone-s1", "S1")):
        store = open_store(None, data, site=site)
        try:
            store.create_device(device, officer)
        finally:
            store.close()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    files = ("--passwd", passwd, "--acl", acl, "--data-dir", data)
    # One site only would take the other's devices off the broker: refused.
    res = _cli("mqtt", "acl", "--site", north, *files)
    assert res.returncode == 2, res.stderr
    assert SOUTH in res.stderr and "every site of the deployment" in res.stderr
    assert not passwd.exists() and not acl.exists()
    res = _cli("mqtt", "acl", "--site", north, "--site", south, *files)
    assert res.returncode == 0, res.stderr
    text = acl.read_text()
    assert f"user phone-n1\ntopic write coverwatch/{NORTH}/devices/phone-n1/events" in text
    assert f"user phone-s1\ntopic write coverwatch/{SOUTH}/devices/phone-s1/events" in text
    assert f"coverwatch/{SOUTH}/devices/phone-n1" not in text
    users = [line.split(":")[0] for line in passwd.read_text().splitlines()]
    assert users == [SERVER_USER, "phone-n1", "phone-s1"]
    assert "phone-n1: " in res.stdout and "phone-s1: " in res.stdout
    # Run again: nobody's password changes (all enrolled phones keep working).
    before = passwd.read_text()
    res = _cli("mqtt", "acl", "--site", north, "--site", south, *files)
    assert res.returncode == 0 and passwd.read_text() == before
