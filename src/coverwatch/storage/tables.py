"""Table definitions of the live store (SQLAlchemy Core).

This metadata is the reference schema: migrations create it, and a test checks
that the migrated database and this module agree. Times are int microseconds
since the Unix epoch (UTC), except ``audit.at``, a wall-clock ISO-8601 text that
is part of the hash-chained evidence.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

__all__ = [
    "DEFAULT_SITE",
    "EVENT_KINDS",
    "PER_SITE_TABLES",
    "Id",
    "alerts",
    "api_tokens",
    "audit",
    "bus_fences",
    "bus_outbox",
    "contacts",
    "dead_letters",
    "deliveries",
    "device_reports",
    "devices",
    "dispatches",
    "engine_checkpoints",
    "events",
    "incidents",
    "legal_holds",
    "metadata",
    "orders_acknowledgements",
    "orders_versions",
    "purges",
    "qualifications",
    "roster_shifts",
    "server_state",
    "sessions",
    "site_roles",
    "tlog_leaves",
    "users",
]

EVENT_KINDS = ("fix", "duty", "gate", "flag")

# The site key of a single-site deployment (and of rows stored before sites had keys).
DEFAULT_SITE = "default"


def _site() -> Column[str]:
    """The site a per-site row belongs to. Deployment-wide tables (users, tokens,
    sessions) have none. Qualifications have one (migration 0010): an admin of one
    site must not qualify an officer at another."""
    return Column("site", Text, nullable=False, server_default=DEFAULT_SITE)


# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias); elsewhere 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = Table(
    "events",
    metadata,
    # id is the global sequence number of the live stream.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("kind", Text, nullable=False),
    # "fix|A1|<t_us>|<device>|<content digest>": re-sent history dedups, while a
    # different fix of the same officer at the same time (phone and radio) is kept.
    Column("key", Text, nullable=False),
    Column("t_us", BigInteger, nullable=False),
    Column("officer", Text),
    Column("x", Float),
    Column("y", Float),
    Column("accuracy", Float),
    Column("post", Text),
    Column("flag", Text),
    Column("on", Boolean),
    Column("open", Boolean),
    Column("capabilities", Text),
    Column("source", Text, nullable=False),
    Column("device", Text),
    Column("received_us", BigInteger, nullable=False),
    Column("late", Boolean, nullable=False, server_default=false()),
    Column("raw", Text),
    # Where a fix's accuracy came from: "reported", "hdop" or "default" (null: not a fix).
    Column("accuracy_source", Text),
    # A late duty/gate/flag event applied live: the horizon it took effect at (0009).
    Column("applied_us", BigInteger),
    # Unique by key; the time first (the key holds it) keeps a batch's inserts at the
    # index's end rather than one page per officer (0018).
    Index(None, "site", "t_us", "key", unique=True),
    Index(None, "site", "t_us", "id"),
)

device_reports = Table(
    "device_reports",
    metadata,
    # Every upload from a phone or tracker, used as a fix or not: the device is alive.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    # "<device>|<t or received>|<content digest>": a re-sent upload is one report.
    Column("key", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("officer", Text),
    # The device's own time of the report (null: it sent none or none that parses).
    Column("t_us", BigInteger),
    Column("received_us", BigInteger, nullable=False),
    Column("battery", Float),
    Column("charging", Boolean),
    # The alarm the device raised (sos, fallDown, lowBattery, powerOff, tampering, ...).
    Column("alarm", Text),
    # Whether a fix was stored from it; if not, why not (plain words).
    Column("used", Boolean, nullable=False),
    Column("reason", Text),
    Column("source", Text, nullable=False),
    Column("raw", Text),
    Index(None, "site", "key", unique=True),
    Index(None, "site", "device", "received_us"),
    Index(None, "site", "officer", "received_us"),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    # Comma-separated, sorted subset of ROLES.
    Column("roles", Text, nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("username"),
)

site_roles = Table(
    "site_roles",
    metadata,
    # A user's roles at one site, beside their deployment-wide ``users.roles`` (a
    # control room that watches every site); a site's key as in every per-site table.
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("site", Text, primary_key=True),
    Column("roles", Text, nullable=False, server_default=""),
)

contacts = Table(
    "contacts",
    metadata,
    # Where the notifier reaches a person: Apprise or signed-webhook URLs, in order.
    # Secrets (tokens, passwords): never logged or listed unredacted.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("user_id", "position"),
)

deliveries = Table(
    "deliveries",
    metadata,
    # Every notification attempt and its outcome: an alert's escalation level,
    # a dispatch, a notification-failure or system alert (level -1 outside escalation).
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("alert_id", Text, nullable=False),
    Column("level", Integer, nullable=False),
    # "escalation", "dispatch" or "direct" (system and notification-failure alerts).
    Column("purpose", Text, nullable=False),
    # The policy target (role:supervisor, user:jo, a redacted URL).
    Column("target", Text, nullable=False),
    # Who it reached (username), when the target resolved to a person.
    Column("person", Text),
    # The redacted address; null when the target resolved to no address at all.
    Column("address", Text),
    # "delivered" or "failed".
    Column("outcome", Text, nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("at_us", BigInteger, nullable=False),
    Index(None, "site", "alert_id", "id"),
)

dispatches = Table(
    "dispatches",
    metadata,
    # A supervisor sent an officer to a post because of an alert.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("alert_id", Text, nullable=False),
    Column("officer", Text, nullable=False),
    Column("post", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("by_user", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index(None, "site", "officer", "at_us"),
    Index(None, "site", "alert_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    # A device belongs to one site at a time; names and tokens are unique deployment-wide.
    _site(),
    Column("officer", Text),
    Column("token_hash", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    UniqueConstraint("name"),
    UniqueConstraint("token_hash"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("token_hash", Text, nullable=False),
    # Comma-separated, sorted subset of TOKEN_ROLES.
    Column("roles", Text, nullable=False, server_default=""),
    Column("created_us", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    UniqueConstraint("name"),
    UniqueConstraint("token_hash"),
)

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the session cookie; the cookie itself is never stored.
    Column("id", Text, primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Index(None, "expires_us"),
)

alerts = Table(
    "alerts",
    metadata,
    # The domain's alert_id_for(kind, post, rule, lapse_start): stable across restarts.
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("post", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("lapse_start_us", BigInteger, nullable=False),
    Column("alert_at_us", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    # JSON of coverwatch.domain.alerts.Alert.to_record(); the columns above are copies for queries.
    Column("record", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    # A restart re-derives the same lapse; this key keeps it one alert.
    UniqueConstraint("site", "kind", "post", "rule", "lapse_start_us"),
    Index(None, "site", "alert_at_us", "id"),
    Index(None, "updated_us"),  # the change scan (distributed mode; migration 0016)
    Index(None, "site", "state"),  # a start reads those not closed (0017)
)

# A flood's alerts grouped as one incident (0015): its Incident.to_record() as JSON.
incidents = Table(
    "incidents",
    metadata,
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("id", Text, primary_key=True),
    Column("started_us", BigInteger, nullable=False),
    Column("cause", Text, nullable=False),
    Column("record", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Index(None, "site", "started_us", "id"),
)

server_state = Table(
    "server_state",
    metadata,
    # Small durable facts of the live server (e.g. the engine's horizon), per site.
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_us", BigInteger),
)

audit = Table(
    "audit",
    metadata,
    # Assigned by the appender (last id + 1) inside the serialised transaction,
    # because the id is part of the hashed content. One chain per site.
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    # "<key id>:<HMAC-SHA256 hex of hash>" under the audit key kept outside the database
    # (COVERWATCH_AUDIT_KEY_FILE); not part of the hash, null for entries made without a key.
    Column("mac", Text),
    UniqueConstraint("hash"),
)

# The site's transparency log (RFC 9162 Merkle tree): one leaf per record, appended in the
# transaction that stores the record. ``idx`` counts from 0 per site, with no gaps.
tlog_leaves = Table(
    "tlog_leaves",
    metadata,
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),  # audit, event, alert, delivery, rule-version
    Column("ref", Text, nullable=False),  # the record's id in its table
    Column("leaf", Text, nullable=False),  # canonical JSON: the leaf's bytes
    Column("hash", Text, nullable=False),  # hex SHA-256(0x00 || leaf)
)

# What retention removed: written by the purge itself (on PostgreSQL inside the definer
# function coverwatch_purge_positions, the only way to delete positions; migration 0014).
purges = Table(
    "purges",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("at_us", BigInteger, nullable=False),
    Column("what", Text, nullable=False),  # "events:fix"
    Column("before_us", BigInteger, nullable=False),  # removed: t_us < before_us, unheld
    Column("removed", BigInteger, nullable=False),
    Column("rule", Text, nullable=False),  # e.g. "retention.positions_days=30"
    Column("actor", Text, nullable=False),
    Index(None, "site", "before_us"),
)

engine_checkpoints = Table(
    "engine_checkpoints",
    metadata,
    # The report engine's state at event time at_us, having seen every event with t_us < at_us
    # (events up to id max_event_id at the time); dropped when an event earlier than at_us arrives.
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("at_us", BigInteger, primary_key=True, autoincrement=False),
    # effective_us of the site version in force at at_us, and SHA-256 of its text.
    Column("version_us", BigInteger, nullable=False),
    Column("version_sha", Text, nullable=False),
    Column("max_event_id", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

legal_holds = Table(
    "legal_holds",
    metadata,
    # Raw events with since_us <= t_us < until_us are never purged while the hold stands.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("since_us", BigInteger, nullable=False),
    Column("until_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("released_by", Text),
    Column("released_us", BigInteger),
)

roster_shifts = Table(
    "roster_shifts",
    metadata,
    # An officer rostered to a post (or a named patrol) for [start_us, end_us).
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("officer", Text, nullable=False),
    Column("post", Text),
    Column("patrol", Text),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index(None, "site", "start_us", "end_us"),
    Index(None, "officer", "start_us"),
)

qualifications = Table(
    "qualifications",
    metadata,
    # One record per site, officer and qualification (e.g. "armed"); a renewal replaces it.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("officer", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("valid_from_us", BigInteger),
    Column("valid_until_us", BigInteger, nullable=False),
    Column("updated_by", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("site", "officer", "name"),
)

orders_versions = Table(
    "orders_versions",
    metadata,
    # Every version of a post's orders the server has issued, with its text.
    Column("site", Text, primary_key=True, server_default=DEFAULT_SITE),
    Column("post", Text, primary_key=True),
    Column("version", Text, primary_key=True),
    Column("since_us", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    # JSON list of what changed from the previous version, in plain words (null: unknown).
    Column("changes", Text),
)

orders_acknowledgements = Table(
    "orders_acknowledgements",
    metadata,
    # Who read which version of a post's orders, when, and through what.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("officer", Text, nullable=False),
    Column("post", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    # "session" (the officer's page) or "device"; device names the device.
    Column("via", Text, nullable=False),
    Column("device", Text),
    Column("user", Text),
    Index(None, "officer", "post", "at_us"),
)

# Distributed mode (0011): a commit group its site's owner has not evaluated yet (events with
# first_id <= id <= last_id of the site; earliest_us their earliest time); deleted once it has.
# ids (0019): the group's own ids as runs ("17-40,43"); NULL for a group noted before 0019.
bus_outbox = Table(
    "bus_outbox",
    metadata,
    Column("site", Text, primary_key=True),
    Column("first_id", BigInteger, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("earliest_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("ids", Text, nullable=True),
)

# Distributed mode (0011): the lease epoch of the site's owner; an owner's write is refused
# unless its epoch is the one here (a fencing token, checked in the write's transaction).
bus_fences = Table(
    "bus_fences",
    metadata,
    Column("site", Text, primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("owner", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    # A message (MQTT) that could not be stored, set aside and acknowledged so that it is
    # not redelivered for ever; kept for admins to see, purged with the site's positions.
    Column("id", Id, primary_key=True, autoincrement=True),
    _site(),
    Column("received_us", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    Column("topic", Text),
    Column("reason", Text, nullable=False),
    # The message as received (UTF-8, undecodable bytes replaced), cut at a limit.
    Column("payload", Text, nullable=False),
    Column("payload_bytes", BigInteger, nullable=False),
    Column("digest", Text, nullable=False),
    Index(None, "site", "received_us"),
)

# Every table whose rows belong to one site (each has a ``site`` column).
PER_SITE_TABLES = (
    events, devices, alerts, server_state, audit, roster_shifts, orders_versions,
    orders_acknowledgements, deliveries, dispatches, engine_checkpoints, legal_holds,
    device_reports, qualifications, bus_outbox, bus_fences, dead_letters, tlog_leaves, purges,
    incidents,
)
