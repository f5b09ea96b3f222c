"""The notification adapter against a real local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coverwatch.domain.alerts import Escalation
from coverwatch.domain.site import Post, Rule, Site
from coverwatch.domain.time import US_PER_S, parse_time
from coverwatch.notify.notifier import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    Notifier,
    escalation_message,
    is_signed_webhook,
    redact_url,
    sign_body,
    verify_signature,
)

SECRET = "topsecret-key-42"
START = parse_time("2024-07-01T13:39:28Z")  # 14:39:28 in London (BST)

SITE = Site(
    id="westminster",
    name="Westminster",
    posts=(
        Post(
            id="north-gate",
            name="Main Gate",
            at=(0.0, 0.0),
            rules=(
                Rule(id="armed-cover", need=2, within_m=25, release_m=30, capability="armed"),
                Rule(id="any-cover", need=1, within_m=25, release_m=30),
            ),
        ),
    ),
)


def escalation(
    targets: tuple[str, ...], level: int = 2, rule: str = "armed-cover", need: int = 2
) -> Escalation:
    return Escalation(
        alert_id="lapse-0123456789abcdef",
        level=level,
        targets=targets,
        due_at=START + 60 * US_PER_S,
        at=START + 70 * US_PER_S,
        kind="lapse",
        post="north-gate",
        rule=rule,
        lapse_start=START,
        alert_at=START + 30 * US_PER_S,
        count=0,
        need=need,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies in order, then 200
    # Requests to /hold/... wait for this before replying; ``released`` says
    # whether it was set (True) or the safety timeout ran out (False).
    hold: threading.Event = field(default_factory=threading.Event)
    released: list[bool] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    state = LocalServer(port=0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
            if self.path.startswith("/hold/"):
                released = state.hold.wait(timeout=20)
                with lock:
                    state.released.append(released)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def no_people(target: str) -> list[str]:
    return []


def notifier(resolve: object = no_people, **kwargs: object) -> Notifier:
    options: dict[str, object] = {
        "webhook_secret": SECRET,
        "site": SITE,
        "timezone": "Europe/London",
        "timeout_s": 5.0,
        "retries": 2,
        "backoff_s": 0.0,
        "clock": lambda: 1_719_841_238.9,
    }
    options.update(kwargs)
    return Notifier(resolve, **options)  # type: ignore[arg-type]


# --- text ------------------------------------------------------------------


def test_message_is_plain_and_specific() -> None:
    title, body = escalation_message(escalation(("role:x",)), SITE, "Europe/London")
    assert title == "LAPSE Main Gate / armed-cover"
    assert body == (
        "LAPSE Main Gate / armed-cover: 0 of 2 armed officers for 1 min 10 s "
        "(since 14:39:28 Europe/London). Level 3."  # levels counted from 1, as on screen
    )


def test_message_without_site_or_capability() -> None:
    _, body = escalation_message(escalation(("role:x",), level=0, need=1, rule="any-cover"))
    assert body == (
        "LAPSE north-gate / any-cover: 0 of 1 officer for 1 min 10 s "
        "(since 13:39:28 UTC). Level 1."
    )


def test_message_shows_date_when_lapse_began_another_day() -> None:
    esc = escalation(("role:x",))
    late = dataclasses.replace(esc, at=START + 11 * 3600 * US_PER_S)
    _, body = escalation_message(late, SITE, "Europe/London")
    assert "for 11 h" in body and "(since 2024-07-01 14:39:28 Europe/London)" in body


# --- redaction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://host.example/hook", "https://host.example/hook"),
        ("https://u:pw@host.example:8443/hook", "https://***@host.example:8443/hook"),
        ("json://127.0.0.1:9/?token=s3cr3t&x=1", "json://127.0.0.1:9/?token=***&x=***"),
        (
            "https://hooks.example/services/T0000/B0000/XXXXXXXX1234567890ab",
            "https://hooks.example/services/T0000/B0000/***",
        ),
        ("mailto://ops:pa55@mail.example", "mailto://***@mail.example"),
        ("mailto://mail.example/duty@example.org", "mailto://mail.example/***"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkc", "slack://***/***/***"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV", "discord://***/***"),
        ("json://localhost:8080/path/", "json://localhost:8080/path/"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_signature_helpers() -> None:
    header = sign_body(b"k", b"body")
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(b"k", b"body", header)
    assert not verify_signature(b"k", b"body!", header)
    assert not verify_signature(b"other", b"body", header)
    assert is_signed_webhook("signed+https://h/p") and not is_signed_webhook("https://h/p")


# --- signed webhooks -------------------------------------------------------


def test_signed_webhook_is_verifiable(server: LocalServer) -> None:
    url = f"signed+http://{server.base}/coverwatch/hook"
    [delivery] = notifier().send_sync(escalation((url,)))
    assert delivery.ok and delivery.attempts == 1 and delivery.error is None
    assert delivery.to == f"signed+http://{server.base}/coverwatch/hook"
    [got] = server.requests
    assert got.path == "/coverwatch/hook"
    assert verify_signature(SECRET.encode(), got.body, got.headers[SIGNATURE_HEADER])
    assert not verify_signature(b"wrong", got.body, got.headers[SIGNATURE_HEADER])
    payload = json.loads(got.body)
    assert got.headers[TIMESTAMP_HEADER] == str(payload["sent_at"]) == "1719841238"
    assert payload["alert_id"] == "lapse-0123456789abcdef"
    assert (payload["post"], payload["rule"], payload["level"]) == ("north-gate", "armed-cover", 2)
    assert payload["lapse_start"] == "2024-07-01T13:39:28Z"
    assert payload["body"].startswith("LAPSE Main Gate / armed-cover: 0 of 2")


def test_signed_webhook_retries_server_errors(server: LocalServer) -> None:
    server.statuses[:] = [500, 503]
    [delivery] = notifier().send_sync(escalation((f"signed+http://{server.base}/h",)))
    assert delivery.ok and delivery.attempts == 3
    assert len(server.requests) == 3
    # Every attempt carries the same signed body.
    assert len({r.body for r in server.requests}) == 1


def test_signed_webhook_gives_up_after_bounded_retries(server: LocalServer) -> None:
    server.statuses[:] = [500] * 10
    [delivery] = notifier(retries=1).send_sync(escalation((f"signed+http://{server.base}/h",)))
    assert not delivery.ok and delivery.attempts == 2 and delivery.error == "HTTP 500"
    assert len(server.requests) == 2


def test_signed_webhook_does_not_retry_refusal(server: LocalServer) -> None:
    server.statuses[:] = [403]
    [delivery] = notifier().send_sync(escalation((f"signed+http://{server.base}/h",)))
    assert not delivery.ok and delivery.attempts == 1 and delivery.error == "HTTP 403"
    assert len(server.requests) == 1


def test_unreachable_webhook_is_a_failed_delivery_not_an_exception() -> None:
    url = f"signed+http://127.0.0.1:{closed_port()}/h"
    [delivery] = notifier().send_sync(escalation((url,)))
    assert not delivery.ok and delivery.attempts == 3
    assert delivery.error is not None and delivery.error.startswith("ConnectError")


def test_signed_webhook_without_secret_is_not_sent(server: LocalServer) -> None:
    [delivery] = notifier(webhook_secret=None).send_sync(
        escalation((f"signed+http://{server.base}/h",))
    )
    assert not delivery.ok and "secret" in (delivery.error or "")
    assert server.requests == []


# --- Apprise ---------------------------------------------------------------


def test_apprise_json_url(server: LocalServer) -> None:
    [delivery] = notifier().send_sync(escalation((f"json://{server.base}/apprise",)))
    assert delivery.ok and delivery.attempts == 1
    [got] = server.requests
    assert got.path == "/apprise"
    payload = json.loads(got.body)
    assert payload["title"] == "LAPSE Main Gate / armed-cover"
    assert "(since 14:39:28 Europe/London). Level 3.\nMessage id: " in payload["message"]
    assert SIGNATURE_HEADER not in got.headers


def test_apprise_failure_is_retried_then_reported(server: LocalServer) -> None:
    server.statuses[:] = [500] * 10
    [delivery] = notifier(retries=1).send_sync(escalation((f"json://{server.base}/a",)))
    assert not delivery.ok and delivery.attempts == 2
    assert len(server.requests) == 2


def test_unsupported_url_is_reported() -> None:
    [delivery] = notifier().send_sync(escalation(("nosuchscheme://x/y",)))
    assert not delivery.ok and delivery.attempts == 0 and "unsupported" in (delivery.error or "")


# --- people: the resolver --------------------------------------------------


def test_roles_and_users_resolve_and_each_url_is_sent_once(server: LocalServer) -> None:
    book = {
        "role:supervisor": [f"json://{server.base}/sgt", f"json://{server.base}/shared"],
        "user:jsmith": [f"json://{server.base}/shared"],
    }
    deliveries = notifier(book.__getitem__).send_sync(
        escalation(("role:supervisor", "user:jsmith"))
    )
    assert sorted(r.path for r in server.requests) == ["/sgt", "/shared"]
    shared = next(d for d in deliveries if d.to and d.to.endswith("/shared"))
    assert shared.targets == ("role:supervisor", "user:jsmith")
    assert all(d.ok for d in deliveries)


def test_resolver_problems_are_failed_deliveries(server: LocalServer) -> None:
    def resolve(target: str) -> list[str]:
        if target == "role:broken":
            raise RuntimeError("directory down")
        if target == "user:odd":
            return ["not a url"]
        if target == "user:ok":
            return [f"json://{server.base}/ok"]
        return []

    deliveries = notifier(resolve).send_sync(
        escalation(("role:broken", "role:empty", "user:odd", "user:ok"))
    )
    by_target = {d.targets: d for d in deliveries}
    assert not by_target[("role:broken",)].ok
    assert "RuntimeError" in (by_target[("role:broken",)].error or "")
    assert by_target[("role:empty",)].error == "names nobody (no active user)"
    assert not by_target[("user:odd",)].ok
    assert by_target[("user:ok",)].ok
    assert [r.path for r in server.requests] == ["/ok"]


def test_people_without_contacts_are_named_in_failed_deliveries(server: LocalServer) -> None:
    def resolve(target: str) -> list[tuple[str, str | None]]:
        return [("ann", None), ("sam", f"json://{server.base}/sam")]

    deliveries = notifier(resolve).send_sync(escalation(("role:supervisor",)))
    by_person = {d.person: d for d in deliveries}
    assert not by_person["ann"].ok and by_person["ann"].error == "has no contact address"
    assert by_person["ann"].to is None
    assert by_person["sam"].ok and by_person["sam"].to == f"json://{server.base}/sam"


def test_async_send_does_not_block_the_event_loop(server: LocalServer) -> None:
    # The receivers hold every request until a coroutine on the event loop lets
    # them go: that can only happen if sending runs off the loop, and all four
    # must be in flight at once for the coroutine to see them.
    targets = (
        *(f"json://{server.base}/hold/{n}" for n in range(3)),
        f"signed+http://{server.base}/hold/signed",
    )

    async def release_when_all_arrived() -> None:
        while len(server.requests) < 4:
            await asyncio.sleep(0.01)
        server.hold.set()

    async def run() -> list[Delivery]:
        releaser = asyncio.create_task(release_when_all_arrived())
        deliveries = await notifier(timeout_s=30.0).send(escalation(targets))
        await releaser
        return deliveries

    deliveries = asyncio.run(run())
    assert server.released == [True] * 4
    assert [d.ok for d in deliveries] == [True] * 4
    assert sorted(r.path for r in server.requests) == [
        "/hold/0",
        "/hold/1",
        "/hold/2",
        "/hold/signed",
    ]


# --- secrets stay out of logs ----------------------------------------------


def test_logs_and_deliveries_never_show_secrets(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.statuses[:] = [200, 500, 500, 500]
    signed = f"signed+http://ops:hunter2pw@{server.base}/h?token=s3cr3tvalue"
    via_apprise = f"json://ops:hunter2pw@{server.base}/a?token=s3cr3tvalue"
    refused = f"signed+http://ops:hunter2pw@127.0.0.1:{closed_port()}/h?token=s3cr3tvalue"
    n = notifier()
    deliveries = n.send_sync(escalation((signed, via_apprise, refused)))
    assert [d.ok for d in deliveries] == [True, False, False]
    text = caplog.text + repr(deliveries) + repr(n)
    # The logs did mention these deliveries (so the check below means something) ...
    assert "HTTP Request: POST" in caplog.text  # httpx's own log line
    assert "NOT delivered to json://***@127.0.0.1" in caplog.text
    assert "delivered to signed+http://***@127.0.0.1" in caplog.text
    # ... without a credential, a query token or the signing secret.
    for secret in ("hunter2pw", "s3cr3tvalue", SECRET):
        assert secret not in text


def test_sos_message_names_the_officer() -> None:
    from coverwatch.domain.alerts import Escalation
    from coverwatch.notify.notifier import escalation_message

    t = 1_893_484_800_000_000
    step = Escalation("sos-1", 0, ("role:supervisor",), t, t, "sos", "", "officer:A1", t, t, 0, 0)
    title, body = escalation_message(step)
    assert title == "SOS from officer A1"
    assert body == "SOS from officer A1 (sent 08:00:00 UTC), position unknown. Level 1."
    _, body = escalation_message(step, where="18 m NE of Gate J1 (±12 m, 40 s old)")
    assert body == ("SOS from officer A1 (sent 08:00:00 UTC), 18 m NE of Gate J1 "
                    "(±12 m, 40 s old). Level 1.")


def test_silent_device_message_says_where_in_words_and_where_rostered() -> None:
    from coverwatch.domain.alerts import Escalation
    from coverwatch.notify.notifier import Notifier, escalation_message

    t = 1_893_484_800_000_000
    step = Escalation("device-silent-1", 1, ("role:supervisor",), t + 60 * US_PER_S,
                      t + 90 * US_PER_S, "device-silent", "north-gate", "device:A1", t, t, 0, 1)
    title, body = escalation_message(step, SITE, "Europe/London")
    assert title == "DEVICE SILENT officer A1"
    assert body == ("DEVICE SILENT officer A1: nothing from their devices for 1 min 30 s "
                    "(since 08:00:00 Europe/London), position unknown; rostered at Main Gate. "
                    "Level 2.")
    where = "18 m NE of Main Gate (±12 m, 2 min old)"
    notifier = Notifier(lambda target: [])
    notifier.where_of = lambda escalation: where
    _, body = notifier.message(step)
    assert f", last known position {where}; rostered at north-gate." in body
