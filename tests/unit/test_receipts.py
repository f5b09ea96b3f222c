"""Receipts per target (issue 21): each delivery at its own time, outcomes told apart,
and every message carries an idempotency key."""

from __future__ import annotations

import time

import pytest

from coverwatch.domain.alerts import Escalation
from coverwatch.notify.notifier import Delivery, Notifier, idempotency_key
from coverwatch.server.outbox import _records, delivery_outcome


def test_each_delivery_is_recorded_at_its_own_end_not_the_slowest() -> None:
    now = time.monotonic()
    fast = Delivery("a", 0, ("role:x",), "json://h/fast", True, 1, ended=now - 3.2)
    slow = Delivery("a", 0, ("role:x",), "json://h/slow", True, 1, ended=now)
    at = 1_000_000_000
    f, s = _records([fast, slow], "escalation", at)
    assert at - s.at_us < 500_000  # the slow one: about now
    assert 3_000_000 <= s.at_us - f.at_us <= 3_700_000
    assert Delivery("a", 0, (), None, False, 0).ended > 0  # stamped when made


@pytest.mark.parametrize(("ok", "error", "outcome"), [
    (True, None, "delivered"),
    (False, "ConnectError: [Errno 111] Connection refused", "refused"),
    (False, "ReadTimeout: timed out", "timed out"),
    (False, "ConnectTimeout: ", "timed out"),
    (False, "HTTP 503", "rejected"),
    (False, "HTTP 403", "rejected"),
    (False, "the notification service did not accept it", "failed"),
    (False, None, "failed"),
])
def test_outcomes_told_apart(ok: bool, error: str | None, outcome: str) -> None:
    assert delivery_outcome(ok, error) == outcome


def test_every_escalation_message_carries_an_idempotency_key() -> None:
    t = 1_893_484_800_000_000
    step = Escalation("lapse-1", 1, ("role:x",), t, t, "lapse", "gate", "cover", t, t, 0, 1)
    msg = Notifier(lambda target: []).escalation_message(step)
    assert msg.payload["idempotency_key"] == idempotency_key("lapse-1", 1) == "lapse-1/level-2"
    assert msg.body.endswith("Message id: lapse-1/level-2 (the same id again is a repeat)")
