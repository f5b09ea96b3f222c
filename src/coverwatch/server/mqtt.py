"""MQTT ingestion: subscribe to ``coverwatch/<site>/events`` (systems) and
``coverwatch/<site>/devices/<device>/events`` (one topic per device) and store
what arrives.

A device topic binds the message to that device and so to its officer, exactly
as a device token does on HTTP: fixes, duty and alarms for that officer only,
a missing accuracy filled from the site's ``default_accuracy_m``. The broker's
ACL (``coverwatch mqtt acl``) makes sure only that device can publish there.

Delivery is at-least-once and nothing the broker delivered is lost:

* a persistent session (client id ``coverwatch-<site>-<node id>``, stable across
  restarts and unique per deployment: ``server.nodeid``; ``clean_session=False``) so the broker
  keeps QoS 1 messages for us while we are disconnected or restarting;
* manual acknowledgement, switched on before connecting (the broker sends the
  session's queued messages right after CONNACK): a PUBACK is sent only after
  the message's events are committed to the store, so a crash or a failed
  commit makes the broker redeliver; re-delivered events are deduplicated by
  the store's event key;
* pipelined: messages keep being read and validated while a commit is in
  flight (the ingest handler merges them into the next group commit), and PUBACKs
  go out in the order the messages arrived, as MQTT requires;
* reconnect with capped backoff when the broker goes away.

The broker must not drop what it queues for us: Mosquitto's default
``max_queued_messages 1000`` drops QoS 1 messages beyond it for a busy
subscriber (see docs/server.md, MQTT, for the settings to use).

A message carries one JSON event, a JSON array of events, or ``{"events": [...]}``.
An invalid message, or one whose records the store refuses on their own (one
message never fails another's: :mod:`coverwatch.server.groupcommit`), is kept
as a dead letter (:mod:`coverwatch.server.deadletters`) and acknowledged
(redelivering it cannot make it storable), logged and counted, so one bad
publisher cannot block the topic. Only a store that cannot commit at all
leaves messages unacknowledged.
aiomqtt does not expose paho's manual-ack switch, so it is set on the wrapped
paho client.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import orjson

from coverwatch.domain.time import seconds_to_us
from coverwatch.formats.validation import IngestProblem, InvalidEvents, validate_records
from coverwatch.server.admission import record_fault
from coverwatch.server.deadletters import set_aside
from coverwatch.server.handlers.ingest import ingest
from coverwatch.server.nodeid import node_id
from coverwatch.server.unit import SiteUnit

__all__ = ["client_id", "device_topic", "device_topic_filter", "run_mqtt", "topic_for"]

log = logging.getLogger("coverwatch.server.mqtt")

_MAX_BATCH_MESSAGES = 500
_MAX_PENDING_BATCHES = 64


def topic_for(site_id: str) -> str:
    return f"coverwatch/{site_id}/events"


def device_topic(site_id: str, device: str) -> str:
    """Where one device publishes its events."""
    return f"coverwatch/{site_id}/devices/{device}/events"


def device_topic_filter(site_id: str) -> str:
    return f"coverwatch/{site_id}/devices/+/events"


def client_id(site_id: str, data_dir: Path) -> str:
    """The MQTT client id: the site plus this deployment's stable node id, so two
    deployments of one site on one broker never take over each other's session."""
    return f"coverwatch-{site_id}-{node_id(data_dir)}"


def _device_of(topic: str, site_id: str) -> str | None:
    prefix, suffix = f"coverwatch/{site_id}/devices/", "/events"
    if topic.startswith(prefix) and topic.endswith(suffix):
        name = topic[len(prefix):-len(suffix)]
        return name if name and "/" not in name else None
    return None


def _records(payload: bytes) -> list[Any]:
    data = orjson.loads(payload)
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    return data if isinstance(data, list) else [data]


async def run_mqtt(svc: SiteUnit, url: str) -> None:
    """Consume the site's event topic until cancelled, reconnecting as needed."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 1883
    topic = topic_for(svc.site.id)
    identifier = client_id(svc.site.id, svc.settings.data_dir)
    backoff = 0.5
    svc.mqtt_connected = False
    while True:
        try:
            client = aiomqtt.Client(
                host, port, identifier=identifier, clean_session=False,
                username=parts.username, password=parts.password, keepalive=30,
            )
            paho = client._client  # aiomqtt has no public manual-ack option
            # Before connecting: paho would acknowledge, before we store them, the
            # session's messages the broker sends right after CONNACK.
            paho.manual_ack_set(True)
            async with client:
                await client.subscribe(topic, qos=1)
                await client.subscribe(device_topic_filter(svc.site.id), qos=1)
                svc.mqtt_connected = True
                backoff = 0.5
                log.info("MQTT subscribed to %s on %s:%s", topic, host, port)
                await _consume(svc, client, paho)
        except asyncio.CancelledError:
            raise
        except aiomqtt.MqttError as e:
            svc.mqtt_connected = False
            log.warning("MQTT connection lost (%s); reconnecting in %.1f s", e, backoff)
        except Exception as e:
            svc.mqtt_connected = False
            svc.health.ingest_failed(f"MQTT consumer: {type(e).__name__}: {str(e)[:200]}")
            log.exception("MQTT consumer failed; reconnecting in %.1f s", backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


_Pending = tuple[list[aiomqtt.Message], "asyncio.Task[Any]"]


async def _consume(svc: SiteUnit, client: aiomqtt.Client, paho: Any) -> None:
    """Read, validate and hand batches to the store; ack each after its commit.

    Raises when the connection drops or a commit fails; the unacknowledged
    messages are then redelivered by the broker after the reconnect.
    """
    # Bounded: at most this many batches read but not yet acknowledged.
    pending: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=_MAX_PENDING_BATCHES)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_ack_in_order(pending, paho), name="mqtt-ack")
            await _read(svc, client, pending, tasks)
    except BaseExceptionGroup as group:
        # Surface the first cause so run_mqtt tells a lost connection from a failure.
        raise group.exceptions[0] from None


async def _read(
    svc: SiteUnit, client: aiomqtt.Client, pending: asyncio.Queue[_Pending],
    tasks: asyncio.TaskGroup,
) -> None:
    queue = client._queue  # drain what has arrived, to validate many messages at once
    async for first in client.messages:
        batch = [first]
        while len(batch) < _MAX_BATCH_MESSAGES and not queue.empty():
            batch.append(queue.get_nowait())
        officers = await asyncio.to_thread(_device_officers, svc, batch)
        # Checked off the event loop: a large batch must not stall the server.
        checked = await asyncio.to_thread(_check_messages, svc, batch, officers)
        # Not awaited here: the next batches are read while this one commits.
        stored = tasks.create_task(_store_batch(svc, checked))
        await pending.put((batch, stored))


# A message, its device, its rows and reports, and why it cannot be stored (None: it can).
_Checked = tuple[aiomqtt.Message, str | None, list[dict[str, Any]], list[dict[str, Any]],
                 str | None]


async def _store_batch(svc: SiteUnit, checked: list[_Checked]) -> None:
    """Store each message (all join the same group commit); set aside as a dead letter
    one that is invalid or that the store refuses on its own. Raises only when the
    store cannot commit (then nothing of the batch is acknowledged)."""

    async def one(item: _Checked) -> None:
        msg, device, rows, reports, problem = item
        if problem is None:
            try:
                await ingest(svc, rows, source="mqtt", device=device, reports=reports)
                return
            except Exception as e:
                if not record_fault(e):
                    raise
                problem = f"the store refused it: {type(e).__name__}: {str(e)[:500]}"
        payload = bytes(msg.payload)  # type: ignore[arg-type,unused-ignore]
        await set_aside(svc, "mqtt", str(msg.topic), payload, problem)

    outcomes = await asyncio.gather(*(one(c) for c in checked), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _device_officers(svc: SiteUnit, batch: list[aiomqtt.Message]) -> dict[str, str | None]:
    """The officer of each active device that published in this batch (None: unknown)."""
    names = {d for m in batch if (d := _device_of(str(m.topic), svc.site.id)) is not None}
    if not names:
        return {}
    # A device publishes only as itself, on its own site's topics.
    active = {d.name: d.officer for d in svc.store.list_devices()
              if d.active and d.site == svc.store.site}
    return {n: active.get(n) for n in names}


def _check_messages(svc: SiteUnit, batch: list[aiomqtt.Message],
                    officers: dict[str, str | None]) -> list[_Checked]:
    out: list[_Checked] = []
    for msg in batch:
        device = _device_of(str(msg.topic), svc.site.id)
        try:
            if device is not None and officers.get(device) is None:
                raise InvalidEvents([IngestProblem(
                    0, None, f"no active device {device!r} assigned to an officer")])
            records = _records(bytes(msg.payload))  # type: ignore[arg-type,unused-ignore]
            reports: list[dict[str, Any]] = []
            rows = validate_records(
                records, svc.site, now_us=svc.clock(),
                max_future_us=seconds_to_us(svc.settings.max_future_s),
                device_officer=None if device is None else officers[device],
                device=device is not None, reports=reports, sender=device or "mqtt",
            )
        except (orjson.JSONDecodeError, InvalidEvents) as e:
            svc.mqtt_rejected += 1
            log.warning("MQTT message %s on %s rejected: %s", msg.mid, msg.topic, e)
            out.append((msg, device, [], [], f"invalid: {e}"))
            continue
        if rows or reports:
            out.append((msg, device, rows, reports, None))
    return out


async def _ack_in_order(pending: asyncio.Queue[_Pending], paho: Any) -> None:
    while True:
        batch, stored = await pending.get()
        await stored  # a store that cannot commit raises here: nothing is acknowledged
        for msg in batch:
            if msg.qos > 0:
                paho.ack(msg.mid, msg.qos)
