"""Notification adapter: sends escalation steps to people and systems.

Targets come from :class:`coverwatch.domain.alerts.EscalationPolicy`:

* ``role:<name>`` / ``user:<name>`` -- the server's resolver turns them into
  notification URLs (a person's e-mail, phone push, chat...);
* ``signed+https://host/path`` (``signed+http://`` for local use) -- a signed
  JSON webhook: the body is POSTed with ``X-Coverwatch-Signature:
  sha256=<hex HMAC-SHA256 of the exact body with the shared secret>`` and
  ``X-Coverwatch-Timestamp: <unix seconds>``. The timestamp is also the body's
  ``sent_at``, so the signature covers it: receivers should check the two agree
  and that it is recent, to refuse replays;
* any other URL -- an Apprise URL (``mailto://``, ``json://``, ``slack://``...).

Sending never raises into the caller: every attempt ends as a :class:`Delivery`
(ok or not, with a short error). Network work runs in worker threads under the
``async`` API so the event loop is never blocked. URLs in our logs and in
deliveries are redacted (credentials, query values, token-like path parts),
and a filter redacts URLs that httpx and Apprise log themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import apprise
import httpx

from coverwatch.domain.alerts import (
    DEVICE_ALARM_KINDS,
    Escalation,
    parse_target,
)
from coverwatch.domain.site import Site
from coverwatch.domain.time import format_time
from coverwatch.notify.messages import (
    DEVICE_SILENT,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    Message,
    Resolver,
    _redact_text,
    escalation_message,
    idempotency_key,
    install_log_redaction,
    is_signed_webhook,
    redact_url,
    sign_body,
    verify_signature,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "Message",
    "Notifier",
    "Resolver",
    "escalation_message",
    "idempotency_key",
    "install_log_redaction",
    "is_signed_webhook",
    "redact_url",
    "sign_body",
    "verify_signature",
]

log = logging.getLogger(__name__)


class Notifier:
    """Sends escalation steps; the server gives it a resolver for people.

    ``webhook_secret`` signs ``signed+`` webhooks (without it they fail, as
    an unsigned POST would be refused by a careful receiver anyway). Each
    address gets up to ``1 + retries`` attempts, ``timeout_s`` each, with
    ``backoff_s * 2**n`` between them; client errors (4xx other than 429) are
    not retried.
    """

    def __init__(
        self,
        resolve: Resolver,
        *,
        webhook_secret: str | bytes | None = None,
        site: Site | None = None,
        timezone: str = "UTC",
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        offload: Callable[..., Awaitable[Any]] = asyncio.to_thread,
        offload_alarms: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        if retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need retries >= 0, timeout_s > 0 and backoff_s >= 0")
        ZoneInfo(timezone)  # fail at start-up, not at the first alert
        self._resolve = resolve
        if isinstance(webhook_secret, str):
            webhook_secret = webhook_secret.encode()
        self._secret = webhook_secret
        self._site = site
        self._timezone = timezone
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._clock = clock
        self._sleep = sleep
        # Where each blocking attempt runs (the server gives its notifications' own pool).
        self._offload = offload
        self._offload_alarms = offload_alarms or offload  # device alarms go ahead
        install_log_redaction()

    def __repr__(self) -> str:  # never show the secret
        return f"Notifier(timezone={self._timezone!r}, signed={self._secret is not None})"

    def warm_up(self) -> None:
        """Load Apprise's plugins now (seconds on a busy machine), not at the first alert."""
        apprise.Apprise().add("json://localhost/warm-up")

    # The server's: an alert's position in words (None for none known), for messages.
    where_of: Callable[[Escalation], str | None] | None = None

    def message(self, escalation: Escalation) -> tuple[str, str]:
        """The ``(title, body)`` this notifier sends for ``escalation``."""
        where = None
        if self.where_of is not None and (escalation.kind in DEVICE_ALARM_KINDS
                                          or escalation.kind == DEVICE_SILENT):
            try:
                where = self.where_of(escalation)
            except Exception:  # the words are a help: never a reason not to send
                log.exception("could not say where alert %s is", escalation.alert_id)
        return escalation_message(escalation, self._site, self._timezone, where)

    def escalation_message(self, escalation: Escalation) -> Message:
        """The :class:`Message` for one escalation step."""
        title, body = self.message(escalation)
        payload: dict[str, object] = {
            "alert_id": escalation.alert_id,
            "kind": escalation.kind,
            "level": escalation.level,
            "post": escalation.post,
            "rule": escalation.rule,
            "count": escalation.count,
            "need": escalation.need,
            "lapse_start": format_time(escalation.lapse_start),
            "alert_at": format_time(escalation.alert_at),
            "at": format_time(escalation.at),
        }
        key = idempotency_key(escalation.alert_id, escalation.level)
        payload["idempotency_key"] = key
        body += f"\nMessage id: {key} (the same id again is a repeat)"
        return Message(escalation.alert_id, escalation.level, escalation.targets, title, body,
                       payload)

    async def send(self, escalation: Escalation) -> list[Delivery]:
        """Send one step to every address, in worker threads, concurrently."""
        return await self.send_message(self.escalation_message(escalation))

    async def send_message(self, message: Message) -> list[Delivery]:
        """Send a message to every address its targets resolve to, concurrently.

        Each attempt runs in the notifications' own bounded pool
        (:mod:`coverwatch.server.pools`); the back-off between attempts waits on
        the event loop, so a failing address never holds a thread while it waits.
        """
        alarm = message.payload.get("kind") in DEVICE_ALARM_KINDS
        planned: tuple[list[Delivery], dict[str, tuple[tuple[str, ...], str | None]]] = \
            await (self._offload_alarms if alarm else self._offload)(self._plan, message)
        failed, plan = planned
        sent = await asyncio.gather(
            *(
                self._deliver_async(message, url, targets, person)
                for url, (targets, person) in plan.items()
            )
        )
        return failed + list(sent)

    async def _deliver_async(
        self, message: Message, url: str, targets: tuple[str, ...], person: str | None = None
    ) -> Delivery:
        alarm = message.payload.get("kind") in DEVICE_ALARM_KINDS
        in_notify = self._offload_alarms if alarm else self._offload
        try:
            sender: Any = None
            if not is_signed_webhook(url):
                sender = await in_notify(_apprise_for, url)
            attempts, error = 0, None
            for attempt in range(self._retries + 1):
                if attempt and self._backoff_s:
                    await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
                if sender is None:
                    ok, tried, error, final = await in_notify(self._post_signed_once,
                                                              message, url)
                else:
                    ok, tried, error, final = await in_notify(self._apprise_once, sender,
                                                              message)
                attempts += tried
                if ok or final:
                    break
        except Exception as exc:  # a bug or a library surprise must not reach the engine
            ok, attempts, error = False, 1, f"{type(exc).__name__}: {_scrub(str(exc), url)}"
        return self._delivered(message, url, targets, person, ok, attempts, error)

    async def send_all(self, escalations: Iterable[Escalation]) -> list[Delivery]:
        """Send several steps, in order; returns every delivery."""
        results: list[Delivery] = []
        for escalation in escalations:
            results.extend(await self.send(escalation))
        return results

    def send_sync(self, escalation: Escalation) -> list[Delivery]:
        """Send one step from the calling thread (blocks; not for the event loop)."""
        message = self.escalation_message(escalation)
        failed, plan = self._plan(message)
        sent = [self._deliver(message, url, t, p) for url, (t, p) in plan.items()]
        return failed + sent

    def _plan(
        self, message: Message
    ) -> tuple[list[Delivery], dict[str, tuple[tuple[str, ...], str | None]]]:
        """Resolve targets to URLs; each URL once, with the targets that asked for it."""
        failed: list[Delivery] = []
        plan: dict[str, tuple[tuple[str, ...], str | None]] = {}

        def fail(target: str, error: str, person: str | None = None) -> None:
            log.warning("alert %s level %d: %s: %s", message.alert_id, message.level,
                        target if person is None else f"{target} ({person})", error)
            failed.append(Delivery(message.alert_id, message.level, (target,), None, False, 0,
                                   error, person))

        for target in message.targets:
            try:
                kind, _ = parse_target(target)
            except ValueError as exc:
                fail(redact_url(target) if "://" in target else target, str(exc))
                continue
            found: list[tuple[str | None, str | None]]
            if kind == "url":
                found = [(None, target)]
                shown = redact_url(target)
            else:
                shown = target
                try:
                    found = [(None, r) if isinstance(r, str) else (r[0], r[1])
                             for r in self._resolve(target)]
                except Exception as exc:  # the resolver is the server's; keep going
                    fail(shown, f"could not resolve: {type(exc).__name__}")
                    continue
                if not found:
                    fail(shown, "names nobody (no active user)" if kind in ("role", "user")
                         else "no notification address")
                    continue
            for person, url in found:
                if url is None:
                    fail(shown, "has no contact address", person)
                    continue
                if "://" not in url:
                    fail(shown, "resolver returned something that is not a URL", person)
                    continue
                old_targets, old_person = plan.get(url, ((), person))
                plan[url] = ((*old_targets, shown), old_person)
        return failed, plan

    def _deliver(
        self, message: Message, url: str, targets: tuple[str, ...], person: str | None = None
    ) -> Delivery:
        try:
            if is_signed_webhook(url):
                ok, attempts, error = self._post_signed(message, url)
            else:
                ok, attempts, error = self._apprise(url, message.title, message.body,
                                                    message.attachments)
        except Exception as exc:  # a bug or a library surprise must not reach the engine
            ok, attempts, error = False, 1, f"{type(exc).__name__}: {_scrub(str(exc), url)}"
        return self._delivered(message, url, targets, person, ok, attempts, error)

    @staticmethod
    def _delivered(message: Message, url: str, targets: tuple[str, ...], person: str | None,
                   ok: bool, attempts: int, error: str | None) -> Delivery:
        shown = redact_url(url)
        if ok:
            log.info("alert %s level %d delivered to %s (attempts %d)",
                     message.alert_id, message.level, shown, attempts)
        else:
            log.warning("alert %s level %d NOT delivered to %s after %d attempt(s): %s",
                        message.alert_id, message.level, shown, attempts, error)
        return Delivery(message.alert_id, message.level, targets, shown, ok, attempts, error,
                        person)

    def _backoff(self, attempt: int) -> None:
        if self._backoff_s:
            self._sleep(self._backoff_s * 2**attempt)

    def _post_signed_once(self, message: Message, url: str
                          ) -> tuple[bool, int, str | None, bool]:
        """One attempt: (delivered, attempts made, error, whether retrying is pointless)."""
        if self._secret is None:
            return False, 0, "no webhook secret configured for a signed webhook", True
        data, headers = self._signed_body(message)
        try:
            with httpx.Client(timeout=self._timeout_s, follow_redirects=False) as client:
                response = client.post(url.partition("+")[2], content=data, headers=headers)
        except httpx.HTTPError as exc:
            return False, 1, f"{type(exc).__name__}: {_scrub(str(exc), url)}", False
        if response.is_success:
            return True, 1, None, True
        # A 4xx other than 429: the receiver refused it; asking again will not help.
        final = response.status_code < 500 and response.status_code != 429
        return False, 1, f"HTTP {response.status_code}", final

    def _apprise_once(self, sender: Any, message: Message
                      ) -> tuple[bool, int, str | None, bool]:
        if sender is False:
            return False, 0, "unsupported or malformed notification URL", True
        if sender.notify(body=message.body, title=message.title, timeout=self._timeout_s,
                         attach=list(message.attachments) or None):
            return True, 1, None, True
        return False, 1, "the notification service did not accept it", False

    def _signed_body(self, message: Message) -> tuple[bytes, dict[str, str]]:
        sent_at = int(self._clock())
        payload = {**message.payload, "title": message.title, "body": message.body,
                   "sent_at": sent_at}
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return data, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(self._secret or b"", data),
            TIMESTAMP_HEADER: str(sent_at),
        }

    def _post_signed(self, message: Message, url: str) -> tuple[bool, int, str | None]:
        attempts, error = 0, None
        for attempt in range(self._retries + 1):
            if attempt:
                self._backoff(attempt - 1)
            ok, tried, error, final = self._post_signed_once(message, url)
            attempts += tried
            if ok:
                return True, attempts, None
            if final:
                break
        return False, attempts, error

    def _apprise(self, url: str, title: str, body: str,
                 attach: tuple[str, ...] = ()) -> tuple[bool, int, str | None]:
        sender = apprise.Apprise()
        if not sender.add(url):
            return False, 0, "unsupported or malformed notification URL"
        attempts = 0
        for attempt in range(self._retries + 1):
            if attempt:
                self._backoff(attempt - 1)
            attempts += 1
            if sender.notify(body=body, title=title, timeout=self._timeout_s,
                             attach=list(attach) or None):
                return True, attempts, None
        return False, attempts, "the notification service did not accept it"


def _apprise_for(url: str) -> Any:
    """An Apprise sender for one URL, or False if Apprise does not take the URL."""
    sender = apprise.Apprise()
    return sender if sender.add(url) else False


def _scrub(text: str, url: str) -> str:
    """Remove a URL and its secret parts from an error message."""
    text = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password, parts.username] + [
            v for _, v in parse_qsl(parts.query, keep_blank_values=False)
        ]
    except ValueError:
        secrets = []
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return _redact_text(text)
