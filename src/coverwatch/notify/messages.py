"""What a notification says and how it is protected: the message and delivery
records, webhook signatures, idempotency keys and the redaction of URLs in logs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

from coverwatch.domain.alerts import (
    DEVICE_ALARM_KINDS,
    SIGNED_WEBHOOK_SCHEMES,
    Escalation,
    format_duration,
)
from coverwatch.domain.site import Site
from coverwatch.domain.time import US_PER_S

__all__ = ["DEVICE_SILENT", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Delivery", "Message",
           "Resolver", "escalation_message", "idempotency_key", "install_log_redaction",
           "is_signed_webhook", "redact_url", "sign_body", "verify_signature"]

SIGNATURE_HEADER = "X-Coverwatch-Signature"
TIMESTAMP_HEADER = "X-Coverwatch-Timestamp"
# The kind of an officer's alert whose devices went quiet (server/handlers/tick.py).
DEVICE_SILENT = "device-silent"

# Given "role:supervisor" or "user:jsmith", the notification URLs to use: plain
# URLs, or (person, URL) pairs; (person, None) is a person without a contact.
Resolver = Callable[[str], Iterable[str | tuple[str, str | None]]]

log = logging.getLogger(__name__)

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
# Schemes whose host and path are an ordinary web address; in other (Apprise
# service) URLs the host and path parts are usually tokens, ids or recipients.
_WEB_SCHEMES = frozenset(
    {"http", "https", "signed+http", "signed+https", "json", "jsons"}
    | {"xml", "xmls", "form", "forms"}
)
# Path parts that look like tokens (webhook keys): long, no spaces, with a digit.
_TOKENISH_RE = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-.=~%]{16,}$")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one escalation step to one address.

    ``targets`` are the policy targets that led here (URLs redacted); ``to`` is
    the redacted address, None when a target could not be resolved at all;
    ``person`` the user it was meant for, when the target named people. ``ended``
    is when this delivery ended (``time.monotonic()``), so each is recorded at its
    own time, not when the slowest of its level ended.
    """

    alert_id: str
    level: int
    targets: tuple[str, ...]
    to: str | None
    ok: bool
    attempts: int
    error: str | None = None
    person: str | None = None
    ended: float = -1.0

    def __post_init__(self) -> None:
        if self.ended < 0:  # made when the attempt ended: that is its time
            object.__setattr__(self, "ended", time.monotonic())


@dataclass(frozen=True, slots=True)
class Message:
    """Something to send that is not an escalation step (a dispatch, a system alert).

    ``payload`` is the JSON body of signed webhooks (title and body are added).
    ``attachments`` are files sent along where the channel takes them (mail does); the
    others (signed webhooks, chat without files) get the body alone, so say it all there.
    """

    alert_id: str
    level: int
    targets: tuple[str, ...]
    title: str
    body: str
    payload: dict[str, object]
    attachments: tuple[str, ...] = ()


def redact_url(url: str) -> str:
    """A URL safe to log: no credentials, query values or token-like parts.

    ``https://u:pw@host/hooks/T0K3Nabcdefghijklmnop?key=s`` becomes
    ``https://***@host/hooks/***?key=***``. For Apprise service URLs other than
    the web ones (json, xml, form) every path part is hidden, and so is a host
    that is not a domain name (``slack://***/***/***``).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    web = parts.scheme.lower() in _WEB_SCHEMES
    netloc = host
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]"
    elif not web and host and "." not in host and host != "localhost":
        netloc = "***"  # e.g. slack://TokenA/..., discord://webhook_id/...
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + netloc
    path = "/".join(
        "***" if seg and (not web or _TOKENISH_RE.match(seg)) else seg
        for seg in parts.path.split("/")
    )
    text = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        keys = [quote(k, safe="") for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
        text += "?" + "&".join(f"{k}=***" for k in keys)
    return text


def _redact_text(text: str) -> str:
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


class _RedactUrls(logging.Filter):
    """Rewrites a record's message with every URL in it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        redacted = _redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_REDACTOR = _RedactUrls()


def install_log_redaction(names: Sequence[str] = (
        "httpx", "apprise", "coverwatch.notify.notifier", "coverwatch.notify.messages"),
) -> None:
    """Make the named loggers redact URLs in their own records (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


def is_signed_webhook(url: str) -> bool:
    """True for ``signed+https://`` and ``signed+http://`` URLs."""
    return url.partition("://")[0].lower() in SIGNED_WEBHOOK_SCHEMES


def sign_body(secret: bytes, body: bytes) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    """Check a received signature header in constant time (for receivers)."""
    return hmac.compare_digest(sign_body(secret, body), header.strip())


def idempotency_key(alert_id: str, level: int) -> str:
    """One key per alert and level: a receiver drops a message whose key it has seen
    (after a crash a level may be sent again: at least once, never silently twice)."""
    return f"{alert_id}/level-{level + 1}"


def escalation_message(
    escalation: Escalation, site: Site | None = None, timezone: str = "UTC",
    where: str | None = None,
) -> tuple[str, str]:
    """``(title, body)`` in plain, specific words, e.g.

    ``LAPSE Main Gate / armed-cover: 0 of 2 armed officers for 1 min 10 s
    (since 14:39:28 Europe/London). Level 2.``

    The duration runs from the lapse start to the escalation's ``at``. ``where`` is
    the position in words (:mod:`coverwatch.domain.where`) for an SOS, a fall or a
    silent device (its officer's last known position);
    levels are counted from 1, as on screen.
    """
    if escalation.kind in DEVICE_ALARM_KINDS:  # an officer's SOS or fall: no post, no count
        officer = escalation.rule.removeprefix("officer:")
        when = _local(escalation.lapse_start, ZoneInfo(timezone)).strftime("%H:%M:%S")
        title = f"{escalation.kind.upper()} from officer {officer}"
        return title, (f"{title} (sent {when} {timezone}), {where or 'position unknown'}. "
                       f"Level {escalation.level + 1}.")
    if escalation.kind == DEVICE_SILENT:
        return _silent_message(escalation, site, timezone, where)
    post_name, capability = escalation.post, None
    if site is not None:
        for post in site.posts:
            if post.id == escalation.post:
                post_name = post.name or post.id
                for rule in post.rules:
                    if rule.id == escalation.rule:
                        capability = rule.capability
    zone = ZoneInfo(timezone)
    since = _local(escalation.lapse_start, zone)
    now = _local(escalation.at, zone)
    since_text = since.strftime("%H:%M:%S" if since.date() == now.date() else "%Y-%m-%d %H:%M:%S")
    who = "officer" if escalation.need == 1 else "officers"
    if capability:
        who = f"{capability} {who}"
    lasted = format_duration(max(0, escalation.at - escalation.lapse_start) / US_PER_S)
    title = f"{escalation.kind.upper()} {post_name} / {escalation.rule}"
    body = (
        f"{title}: {escalation.count} of {escalation.need} {who} for {lasted} "
        f"(since {since_text} {timezone}). Level {escalation.level + 1}."
    )
    return title, body


def _silent_message(escalation: Escalation, site: Site | None, timezone: str,
                    where: str | None) -> tuple[str, str]:
    """An officer whose devices went quiet: since when, where they were last (in words,
    relative to the nearest post) and where they are rostered."""
    officer = escalation.rule.removeprefix("device:")
    post_name = escalation.post
    for post in site.posts if site is not None else ():
        if post.id == escalation.post:
            post_name = post.name or post.id
    zone = ZoneInfo(timezone)
    since = _local(escalation.lapse_start, zone).strftime("%H:%M:%S")
    lasted = format_duration(max(0, escalation.at - escalation.lapse_start) / US_PER_S)
    title = f"DEVICE SILENT officer {officer}"
    last = f"last known position {where}" if where and where != "position unknown" \
        else "position unknown"
    return title, (f"{title}: nothing from their devices for {lasted} (since {since} "
                   f"{timezone}), {last}; rostered at {post_name}. "
                   f"Level {escalation.level + 1}.")


def _local(t_us: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t_us // US_PER_S, tz=UTC).astimezone(zone)
