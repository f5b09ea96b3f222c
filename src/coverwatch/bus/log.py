"""The event log: one JetStream stream of accepted events, one subject per site.

A gateway publishes the events each commit stored to ``<prefix>.events.<site>``, a
message per chunk of the commit group (:func:`chunk_msg_id` is its ``Nats-Msg-Id``), and
acknowledges the client only after the stream's PubAck, so JetStream drops a second copy
of a chunk (the owner's relay rebuilds the same chunks) within its duplicate
window. The window is finite: permanent idempotence stays the unique event key
in PostgreSQL (a re-send later than the window is older than the horizon
anyway, so the worker counts it late and the engine never sees it).

The owner of a site also publishes *watermarks* into the same subject. The
stream is then the whole input of a site's evaluation: an event is late when a
watermark later than its time precedes it in the stream. Any owner replaying
the stream from a checkpoint makes exactly the same decisions, which is what
makes a takeover invisible in the lapses. A change of the site's rules goes
into the subject the same way, as a *control* message, so that every owner
switches at the same point of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

__all__ = [
    "BusMessage",
    "BusNames",
    "Delivered",
    "EventChunk",
    "EventLog",
    "Published",
    "chunk_msg_id",
    "connect",
    "decode",
    "decode_all",
    "decode_message",
    "reconcile_replicas",
    "server_urls",
]

log = logging.getLogger("coverwatch.bus")

_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# Site ids are checked by the site file (lower-case words and hyphens); these
# are also safe as NATS subject tokens and KV keys.
_SITE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
KIND_HEADER = "Coverwatch-Kind"
# An event republished under a fresh message id (its first copy was acknowledged and then
# lost by the stream, while its id stays in the duplicate window) names its key here.
KEY_HEADER = "Coverwatch-Key"
# A message of several events (``Coverwatch-Kind: events``): its body is a list of
# ``[key, row]`` pairs, delivered as that many event items sharing the message's sequence.
EVENTS_KIND = "events"


def chunk_msg_id(site: str, first_id: int, index: int) -> str:
    """The message id of chunk ``index`` of the commit group whose first event id is
    ``first_id``: the gateway's and the relay's copies of a chunk share it."""
    return f"g:{site}:{first_id}:{index}"


@dataclass(frozen=True, slots=True)
class BusNames:
    """Names on a shared NATS, all starting ``coverwatch`` (or another prefix)."""

    prefix: str = "coverwatch"

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(f"bus prefix {self.prefix!r}: lower-case letters, digits, hyphens")

    @property
    def stream(self) -> str:
        return f"{self.prefix}-events"

    @property
    def subjects(self) -> str:
        return f"{self.prefix}.events.*"

    def subject(self, site: str) -> str:
        if not _SITE.fullmatch(site):
            raise ValueError(f"site id {site!r} cannot name a bus subject")
        return f"{self.prefix}.events.{site}"

    def site_of(self, subject: str) -> str:
        return subject.rsplit(".", 1)[-1]

    @property
    def leases(self) -> str:
        return f"{self.prefix}-leases"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}-checkpoints"


@dataclass(frozen=True, slots=True)
class Published:
    """The stream's acknowledgement of one event: durable at ``seq``."""

    key: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One message of a site's subject, in stream order.

    ``kind`` "event": ``data`` is the event row (the store's column names),
    ``key`` its idempotence key. ``kind`` "watermark": ``data`` is
    ``{"horizon_us": …}``, the owner's promise that later events earlier than
    that time count as late. ``kind`` "control": ``data`` is for the evaluator
    (e.g. ``{"site_source": …}``, new rules in force from that point of the stream).
    """

    site: str
    seq: int
    kind: Literal["event", "watermark", "control"]
    key: str | None
    data: Mapping[str, Any]
    # The item's place in its message (0 but in a message of several events): the items
    # of one message share ``seq``, so a consumer applies a message whole (see follow).
    index: int = 0

    @property
    def horizon_us(self) -> int:
        return int(self.data["horizon_us"])


@dataclass(frozen=True, slots=True)
class EventChunk:
    """A message of several events as columns: no :class:`BusMessage` per event (the
    worker's path; :meth:`items` gives them). Every event shares ``seq``."""

    site: str
    seq: int
    keys: Sequence[str]
    rows: Sequence[Mapping[str, Any]]

    @property
    def kind(self) -> Literal["event"]:
        return "event"

    def __len__(self) -> int:
        return len(self.keys)

    def items(self) -> list[BusMessage]:
        """The events as items, in order (``index`` their place in the message)."""
        site, seq = self.site, self.seq
        return [BusMessage(site, seq, "event", key, row, i)
                for i, (key, row) in enumerate(zip(self.keys, self.rows, strict=True))]


@dataclass(slots=True)
class Delivered:
    """The events a follower of a site delivered: the stream sequence it started after,
    and the sequence each event key came at (the bus outbox's proof, on the owner,
    that a commit group reached the stream and this evaluation)."""

    after_seq: int
    keys: dict[str, int]
    # The site's messages after the last delivered one when it was delivered (-1: none
    # delivered yet): 0 is the end of the stream as it was then (a start's backlog read).
    pending: int = -1


def decode(names: BusNames, msg: Msg) -> BusMessage:
    """A delivered JetStream message as a :class:`BusMessage`."""
    headers = msg.headers or {}
    marked = headers.get(KIND_HEADER)
    kind: Literal["event", "watermark", "control"] = (
        "watermark" if marked == "watermark" else "control" if marked == "control" else "event"
    )
    return BusMessage(
        site=names.site_of(msg.subject),
        seq=msg.metadata.sequence.stream,
        kind=kind,
        key=headers.get(KEY_HEADER) or headers.get("Nats-Msg-Id"),
        data=orjson.loads(msg.data),
    )


def decode_message(names: BusNames, msg: Msg) -> BusMessage | EventChunk:
    """A delivered message: a :class:`BusMessage`, or an :class:`EventChunk` for a message
    of several events (its body split into keys and rows, nothing made per event)."""
    headers = msg.headers or {}
    if headers.get(KIND_HEADER) != EVENTS_KIND:
        return decode(names, msg)
    pairs = orjson.loads(msg.data)
    keys, rows = zip(*pairs, strict=True) if pairs else ((), ())
    if set(map(type, keys)) - {str}:  # a key the publisher sent as a number
        keys = tuple(map(str, keys))
    return EventChunk(names.site_of(msg.subject), msg.metadata.sequence.stream, keys, rows)


def decode_all(names: BusNames, msg: Msg) -> list[BusMessage]:
    """A delivered message as its items: one, or each event of a message of several."""
    item = decode_message(names, msg)
    return item.items() if isinstance(item, EventChunk) else [item]


def server_urls(url: str | Sequence[str]) -> list[str]:
    """The NATS servers of ``url``: one URL, a comma-separated list, or a sequence of them."""
    parts = [url] if isinstance(url, str) else list(url)
    urls = [u.strip() for part in parts for u in part.split(",") if u.strip()]
    if not urls:
        raise ValueError("no NATS URL given")
    return urls


async def connect(url: str | Sequence[str], *, name: str = "coverwatch",
                  **options: Any) -> Client:
    """A NATS connection that keeps reconnecting (a NATS restart is an outage, not an end).

    ``url`` may list several servers of one NATS cluster (comma-separated): the client
    connects to any of them and moves to another when its server dies, or stops
    answering: a server cut off by the network closes nothing, and the client's default
    pings (every 120 s, two unanswered) would keep it there for four minutes.
    """
    options = {"ping_interval": 3, "max_outstanding_pings": 3, **options}
    return await nats.connect(
        server_urls(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        connect_timeout=3, **options,
    )


async def reconcile_replicas(js: JetStreamContext, stream: str, replicas: int | None, *,
                             max_age_s: float | None = None) -> api.StreamInfo:
    """Scale an existing stream (or a KV bucket's ``KV_<bucket>``) to ``replicas``, and give
    it ``max_age_s`` (a KV bucket's TTL) if that is set and differs.

    None leaves either as it is. JetStream moves the data itself; on a server that is
    not clustered, more than one replica is refused with NATS's own error.
    """
    info = await js.stream_info(stream)
    have = info.config.num_replicas or 1
    changes: dict[str, Any] = {}
    if replicas is not None and have != replicas:
        log.info("stream %s: %d replica(s) -> %d", stream, have, replicas)
        changes["num_replicas"] = replicas
    if max_age_s is not None and abs((info.config.max_age or 0.0) - max_age_s) > 1e-3:
        log.info("stream %s: max age %s s -> %s s", stream, info.config.max_age, max_age_s)
        # The server refuses a duplicate window longer than the age.
        window = info.config.duplicate_window or max_age_s
        changes |= {"max_age": max_age_s, "duplicate_window": min(window, max_age_s)}
    if not changes:
        return info
    return await js.update_stream(info.config.evolve(**changes))


class EventLog:
    """The ``<prefix>-events`` stream: publish accepted events, read a site in order."""

    def __init__(
        self, js: JetStreamContext, names: BusNames | None = None, *,
        replicas: int | None = None,
        duplicate_window_s: float = 600.0, max_age_s: float | None = 6 * 3600.0,
    ) -> None:
        self.js = js
        self.names = names or BusNames()
        # None: created with one replica, an existing stream's count left alone; a number
        # is the deployment's (``--bus-replicas``): created so, and an existing stream scaled.
        self.replicas = replicas
        self.duplicate_window_s = duplicate_window_s
        # The stream need only reach back past the oldest checkpoint; history is in PostgreSQL.
        self.max_age_s = max_age_s
        # By site: what this process's follower delivered (see Delivered, follow).
        self.delivered: dict[str, Delivered] = {}

    async def ensure(self) -> api.StreamInfo:
        """Create the stream if missing (file storage, the configured replicas and window);
        bring an existing stream's number of replicas to the configured one."""
        config = api.StreamConfig(
            name=self.names.stream,
            description="coverwatch: events, watermarks, rule changes; a subject per site",
            subjects=[self.names.subjects],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas or 1,
            duplicate_window=self.duplicate_window_s,
            max_age=self.max_age_s,
            discard=api.DiscardPolicy.OLD,
        )
        try:
            return await reconcile_replicas(self.js, self.names.stream, self.replicas)
        except NotFoundError:
            return await self.js.add_stream(config)

    async def delete(self) -> None:
        """Remove the stream (tests and benchmarks clean up after themselves)."""
        await self.js.delete_stream(self.names.stream)

    async def publish(
        self, site: str, events: Sequence[tuple[str, Mapping[str, Any]]], *,
        timeout: float = 5.0, fresh: str | None = None,
    ) -> list[Published]:
        """Publish ``(key, row)`` pairs and wait for every PubAck.

        Only after this returns may the gateway acknowledge: each event is then
        in the stream (and its replicas). A raised error means some may not be;
        the client re-sends and the message ids drop the ones that were.
        ``fresh``: message ids ``<key>~<fresh>`` instead of the keys (the key in
        :data:`KEY_HEADER`), for events the stream holds as duplicates but lost.
        """
        subject = self.names.subject(site)

        def headers(key: str) -> dict[str, str]:
            if fresh is None:
                return {"Nats-Msg-Id": key}
            return {"Nats-Msg-Id": f"{key}~{fresh}", KEY_HEADER: key}

        acks = await asyncio.gather(*(
            self.js.publish(subject, orjson.dumps(row), timeout=timeout, headers=headers(key))
            for key, row in events
        ))
        return [Published(key, ack.seq, bool(ack.duplicate))
                for (key, _), ack in zip(events, acks, strict=True)]

    async def publish_events(
        self, site: str, events: Sequence[tuple[str, Mapping[str, Any]]], msg_id: str, *,
        timeout: float = 5.0, fresh: str | None = None,
    ) -> Published:
        """Publish ``(key, row)`` pairs as ONE message (one PubAck), deduplicated by
        ``msg_id``; returns its acknowledgement (``key`` is ``msg_id``).

        The gateway sends a commit group so, a chunk a message (:func:`chunk_msg_id`);
        each event of a group is in exactly one chunk, so a key is in the stream once per
        duplicate window. ``fresh``: message id ``<msg_id>~<fresh>`` (``msg_id`` in
        :data:`KEY_HEADER`), for a chunk the stream holds as a duplicate but lost."""
        headers = {KIND_HEADER: EVENTS_KIND, "Nats-Msg-Id": msg_id}
        if fresh is not None:
            headers |= {"Nats-Msg-Id": f"{msg_id}~{fresh}", KEY_HEADER: msg_id}
        ack = await self.js.publish(
            self.names.subject(site), orjson.dumps([[k, row] for k, row in events]),
            timeout=timeout, headers=headers)
        return Published(msg_id, int(ack.seq), bool(ack.duplicate))

    async def publish_watermark(self, site: str, horizon_us: int, *,
                                timeout: float = 5.0) -> int:
        """Append a watermark to the site's subject; returns its stream sequence."""
        ack = await self.js.publish(
            self.names.subject(site), orjson.dumps({"horizon_us": int(horizon_us)}),
            timeout=timeout, headers={KIND_HEADER: "watermark",
                                      "Nats-Msg-Id": f"wm:{site}:{int(horizon_us)}"},
        )
        return int(ack.seq)

    async def publish_control(self, site: str, msg_id: str, data: Mapping[str, Any], *,
                              timeout: float = 5.0) -> int:
        """Append a control message (e.g. new rules for the site); returns its sequence.

        ``msg_id`` deduplicates a re-sent change (e.g. ``site:<version hash>``).
        """
        ack = await self.js.publish(
            self.names.subject(site), orjson.dumps(data), timeout=timeout,
            headers={KIND_HEADER: "control", "Nats-Msg-Id": msg_id},
        )
        return int(ack.seq)

    async def key_at(self, seq: int) -> str | None:
        """The event key, or a chunk's message id, of the stream's message at ``seq``
        (None: none there, or no key)."""
        try:
            msg = await self.js.get_msg(self.names.stream, seq)
        except NotFoundError:
            return None
        headers = msg.headers or {}
        return headers.get(KEY_HEADER) or headers.get("Nats-Msg-Id")

    async def last_seq(self, site: str) -> int:
        """The stream sequence of the site's newest message (0 if none)."""
        try:
            msg = await self.js.get_last_msg(self.names.stream, self.names.subject(site))
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def follow(
        self, site: str, after_seq: int, on_message: Callable[[BusMessage], Awaitable[None]],
    ) -> JetStreamContext.PushSubscription:
        """Deliver the site's items after ``after_seq`` one by one; see :meth:`follow_messages`."""

        async def each(items: list[BusMessage]) -> None:
            for item in items:
                await on_message(item)

        return await self.follow_whole(site, after_seq, each)

    async def follow_whole(
        self, site: str, after_seq: int,
        on_message: Callable[[list[BusMessage]], Awaitable[None]],
    ) -> JetStreamContext.PushSubscription:
        """Deliver each message's items together; see :meth:`follow_messages`."""

        async def whole(item: BusMessage | EventChunk) -> None:
            await on_message(item.items() if isinstance(item, EventChunk) else [item])

        return await self.follow_messages(site, after_seq, whole)

    async def follow_messages(
        self, site: str, after_seq: int,
        on_message: Callable[[BusMessage | EventChunk], Awaitable[None]],
    ) -> JetStreamContext.PushSubscription:
        """Deliver the site's messages after ``after_seq``, in stream order, to ``on_message``:
        a message of several events as one :class:`EventChunk` (applied whole, so a
        cursor at its sequence never splits it).

        An ordered consumer: no server-side acks (the checkpoint is the cursor),
        and the client re-creates it from the last delivered sequence after a
        gap or a NATS restart. Unsubscribe the returned subscription to stop.
        The event keys delivered are noted in :attr:`delivered` (for the site's last
        follower in this process).
        """
        if after_seq > 0:
            policy, start = api.DeliverPolicy.BY_START_SEQUENCE, after_seq + 1
        else:
            policy, start = api.DeliverPolicy.ALL, None
        config = api.ConsumerConfig(deliver_policy=policy, opt_start_seq=start,
                                    inactive_threshold=30.0)

        seen = self.delivered[site] = Delivered(after_seq, {})

        async def handle(msg: Msg) -> None:
            item = decode_message(self.names, msg)
            seen.pending = msg.metadata.num_pending
            if isinstance(item, EventChunk):
                seen.keys.update(dict.fromkeys(item.keys, item.seq))  # a chunk at once
            elif item.kind == "event" and item.key is not None:
                seen.keys[item.key] = item.seq
            await on_message(item)

        return await self.js.subscribe(
            self.names.subject(site), stream=self.names.stream, cb=handle,
            ordered_consumer=True, idle_heartbeat=2.0, config=config,
        )
