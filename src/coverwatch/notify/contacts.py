"""Checking contact addresses when they are entered, and showing them safely.

A contact is an Apprise URL (``mailto://``, ``ntfy://``, ``gotify://``,
``tgram://``, ``matrix://``, ``json://``...) or a signed webhook
(``signed+https://``). It is checked on entry, so a typo is refused at the
keyboard instead of being found at the first lapse; it is a secret (tokens,
passwords), so listings show :func:`redact_url` of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import apprise

from coverwatch.errors import CoverwatchError
from coverwatch.notify.notifier import is_signed_webhook, redact_url

__all__ = ["InvalidContactError", "check_contact", "check_contacts", "redact_contacts"]

MAX_CONTACT_CHARS = 2000


class InvalidContactError(CoverwatchError, ValueError):
    """A contact address the notifier could not use (the message never shows secrets)."""


def check_contact(url: str) -> str:
    """The contact, stripped, if the notifier can send to it; else InvalidContactError."""
    text = url.strip()
    if not text:
        raise InvalidContactError("a contact address must not be empty")
    if len(text) > MAX_CONTACT_CHARS:
        raise InvalidContactError(f"a contact address is at most {MAX_CONTACT_CHARS} characters")
    if "://" not in text:
        raise InvalidContactError(
            "a contact address is a URL such as mailto://user:pass@example.org or "
            "ntfy://topic (see the Apprise documentation)")
    shown = redact_url(text)
    if is_signed_webhook(text):
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        if not host:
            raise InvalidContactError(f"{shown}: a signed webhook needs a host")
        return text
    if not apprise.Apprise().add(text):
        scheme = text.partition("://")[0]
        raise InvalidContactError(
            f"{shown}: Apprise does not accept this address (unknown scheme {scheme!r}, "
            "or a part it needs is missing)")
    return text


def check_contacts(urls: Iterable[str]) -> list[str]:
    """Check several contacts; the first bad one raises."""
    return [check_contact(u) for u in urls]


def redact_contacts(urls: Iterable[str]) -> list[str]:
    """Contacts as they may be shown in listings and logs."""
    return [redact_url(u) for u in urls]
