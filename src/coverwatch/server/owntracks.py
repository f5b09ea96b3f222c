"""OwnTracks over MQTT: read ``owntracks/<user>/<device>`` topics as coverwatch devices.

Which topic is which device is an explicit mapping (``serve --owntracks
USER/DEVICE=NAME``, :attr:`coverwatch.settings.Settings.owntracks_mqtt`):
only mapped topics are subscribed, and each message is a fix of that
device's officer (looked up when the message arrives, so a revoked device
stops counting at once). The same translation as the HTTP mode
(:mod:`coverwatch.formats.owntracks`), and the same device-report path as
every phone (:func:`store_owntracks`, :func:`coverwatch.server.devices.device_upload`):
battery, charging and the app's other fields are kept in a device report.
Like ``server.mqtt``: a persistent session, and a message is acknowledged
only after its fix is committed. A location that cannot be a fix is a device
report with the reason (like every phone's); a message that is not OwnTracks,
or comes for an unknown or revoked device, is acknowledged, logged and counted
(``mqtt_rejected``); one that is not JSON or OwnTracks, or that the store
refuses, is also kept as a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiomqtt
import orjson

from coverwatch.domain.time import seconds_to_us
from coverwatch.formats.accuracy import default_accuracy_m
from coverwatch.formats.owntracks import (
    OwnTracksError,
    OwnTracksMessage,
    owntracks_readings,
    owntracks_records,
)
from coverwatch.server.admission import record_fault
from coverwatch.server.deadletters import set_aside
from coverwatch.server.devices import DeviceUpload, device_upload
from coverwatch.server.handlers.ingest import ingest
from coverwatch.server.nodeid import node_id
from coverwatch.server.unit import SiteUnit

__all__ = ["parse_owntracks_map", "run_owntracks_mqtt", "store_owntracks"]


async def store_owntracks(svc: SiteUnit, message: OwnTracksMessage, *, officer: str,
                          device: str) -> DeviceUpload:
    """Store a message's locations as device reports (and fixes where usable)."""
    upload = device_upload(owntracks_readings(message), svc.site, officer=officer,
                           device=device, received_us=svc.clock(),
                           max_future_us=seconds_to_us(svc.settings.max_future_s))
    for reading in upload.reply:
        if reading["reason"]:
            log.info("OwnTracks location from device %s not used as a fix: %s", device,
                     reading["reason"])
    if upload.reports:
        await ingest(svc, upload.rows, source="owntracks", device=device,
                         reports=upload.reports)
    return upload

log = logging.getLogger("coverwatch.server.owntracks")
_PART = re.compile(r"[^/#+\s]+")


def parse_owntracks_map(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["alice/phone=dev-a7"]`` -> ``(("alice/phone", "dev-a7"),)``; ValueError if malformed."""
    out: dict[str, str] = {}
    for item in items:
        topic, sep, device = item.partition("=")
        parts = topic.strip().split("/")
        if (not sep or not device.strip() or len(parts) != 2
                or not all(_PART.fullmatch(p) for p in parts)):
            raise ValueError(f"{item!r}: expected USER/DEVICE=COVERWATCH-DEVICE "
                             "(no '+', '#' or spaces)")
        if topic.strip() in out:
            raise ValueError(f"{topic.strip()!r} is mapped twice")
        out[topic.strip()] = device.strip()
    return tuple(out.items())


async def run_owntracks_mqtt(svc: SiteUnit, url: str,
                             mapping: tuple[tuple[str, str], ...]) -> None:
    """Consume the mapped OwnTracks topics until cancelled, reconnecting as needed."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    topics = {f"owntracks/{key}": device for key, device in mapping}
    backoff = 0.5
    while True:
        try:
            client = aiomqtt.Client(
                host, port,
                identifier=f"coverwatch-{svc.site.id}-{node_id(svc.settings.data_dir)}-owntracks",
                clean_session=False, username=parts.username, password=parts.password,
                keepalive=30,
            )
            paho = client._client  # aiomqtt has no public manual-ack option
            paho.manual_ack_set(True)
            async with client:
                for topic in topics:
                    await client.subscribe(topic, qos=1)
                backoff = 0.5
                log.info("OwnTracks: subscribed to %d topic(s) on %s:%s", len(topics), host,
                         port)
                async for msg in client.messages:
                    await _handle(svc, str(msg.topic), bytes(msg.payload),  # type: ignore[arg-type,unused-ignore]
                                  topics)
                    if msg.qos > 0:
                        paho.ack(msg.mid, msg.qos)
        except asyncio.CancelledError:
            raise
        except aiomqtt.MqttError as e:
            log.warning("OwnTracks MQTT connection lost (%s); reconnecting in %.1f s", e, backoff)
        except Exception:
            log.exception("OwnTracks MQTT consumer failed; reconnecting in %.1f s", backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


async def _handle(svc: SiteUnit, topic: str, payload: bytes, topics: dict[str, str]) -> None:
    """Store the message's fix; raises only if the store fails (then it is redelivered)."""
    name = topics.get(topic)
    if name is None or not payload:  # an empty payload clears a retained message
        return
    devices = await asyncio.to_thread(svc.store.list_devices)
    device = next((d for d in devices if d.name == name), None)
    if device is not None and device.site != svc.store.site:
        return  # another site's device: that site's consumer stores it
    if device is None or not device.active or device.officer is None:
        svc.mqtt_rejected += 1
        log.warning("OwnTracks message on %s not used: device %r is unknown, revoked or "
                    "has no officer", topic, name)
        return
    try:
        message = owntracks_records(orjson.loads(payload), device.officer,
                                    default_accuracy_m=default_accuracy_m(svc.site))
    except (orjson.JSONDecodeError, OwnTracksError) as e:
        svc.mqtt_rejected += 1
        log.warning("OwnTracks message on %s rejected: %s", topic, e)
        await set_aside(svc, "owntracks", topic, payload, f"invalid: {e}")
        return
    if message.unreadable:
        svc.mqtt_rejected += 1
        log.warning("OwnTracks message on %s: %s", topic, "; ".join(message.ignored))
    try:
        await store_owntracks(svc, message, officer=device.officer, device=device.name)
    except Exception as e:
        if not record_fault(e):
            raise  # the store cannot commit: left unacknowledged, redelivered
        await set_aside(svc, "owntracks", topic, payload,
                        f"the store refused it: {type(e).__name__}: {str(e)[:500]}")
