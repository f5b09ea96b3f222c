"""The ``Idempotency-Key`` header on the control room's actions (draft-ietf-httpapi-
idempotency-key-header): a retry of an acknowledgement or a dispatch with the same key is
done once and answered the same; the same key for another request is a 422 that says so;
a malformed key is a 400; an error is not kept; keys are the caller's own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from starlette.datastructures import State
from starlette.requests import Request
from test_delivery import _kit, _raise_lapse

from coverwatch.api.idempotency import once, parse_key
from coverwatch.http.access import Principal
from serverkit import Caller, Kit

__all__: list[str] = []


def _post(kit: Kit, caller: Caller, path: str, body: dict[str, Any],
          *keys: str) -> httpx.Response:
    headers = [*caller.for_method("POST").items(), *(("Idempotency-Key", k) for k in keys)]
    kit.client.cookies.clear()
    response: httpx.Response = kit.client.post(path, json=body, headers=headers)
    return response


def _audited(kit: Kit, alert_id: str, action: str) -> int:
    return sum(1 for e in kit.svc.store.audit_entries(0, 1000)
               if e.subject == f"alert:{alert_id}" and e.action == action)


def test_a_retried_dispatch_sends_the_officer_once(tmp_path: Path) -> None:
    with _kit(tmp_path, "") as kit:
        sup = kit.user("sam", "supervisor")
        alert = _raise_lapse(kit)
        path = f"/api/v1/alerts/{alert['id']}/dispatch"
        # An error is not kept: the same key then works for the corrected request.
        bad = _post(kit, sup, path, {"officer": "nobody-here"}, '"k-1"')
        assert bad.status_code == 422, bad.text
        first = _post(kit, sup, path, {"officer": "A2", "note": "north door"}, '"k-1"')
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        again = _post(kit, sup, path, {"note": "north door", "officer": "A2"}, "k-1")
        assert again.status_code == 201, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        kit.settle()
        assert _audited(kit, alert["id"], "alert.dispatched") == 1
        # The same key for a different request is refused, and says why.
        other = _post(kit, sup, path, {"officer": "A1"}, "k-1")
        assert other.status_code == 422
        assert "'k-1' was already used for a different request" in other.text
        # Without a key each request acts: a second dispatch is stored.
        assert _post(kit, sup, path, {"officer": "A2"}).status_code == 201
        assert _audited(kit, alert["id"], "alert.dispatched") == 2


def test_a_retried_acknowledgement_is_answered_again_not_refused(tmp_path: Path) -> None:
    with _kit(tmp_path, "") as kit:
        sup = kit.user("sam", "supervisor")
        other = kit.user("kim", "supervisor")
        alert = _raise_lapse(kit)
        path = f"/api/v1/alerts/{alert['id']}/acknowledge"
        first = _post(kit, sup, path, {"note": "on it"}, '"ack-7"')
        assert first.status_code == 200, first.text
        again = _post(kit, sup, path, {"note": "on it"}, '"ack-7"')
        assert (again.status_code, again.json()) == (200, first.json())
        assert _audited(kit, alert["id"], "alert.acknowledged") == 1
        # Keys are each caller's own: the same key from someone else is their request.
        theirs = _post(kit, other, path, {"note": "on it"}, '"ack-7"')
        assert theirs.status_code == 409, theirs.text
        # Without a key, acknowledging twice is refused as before.
        assert _post(kit, sup, path, {"note": "on it"}).status_code == 409


@pytest.mark.parametrize(("keys", "words"), [
    (("a", "b"), "send the header once"),
    (('""',), "the key is empty"),
    (('"abc',), "must end with a closing quote"),
    (("two words",), "must be a quoted string"),
    (('"a\\x"',), "may be escaped"),
    (("k" * 256,), "at most 255"),
    (('"caf\u00e9"',), "printable ASCII"),
])
def test_a_malformed_key_is_a_400_that_says_what_is_wrong(
    tmp_path: Path, keys: tuple[str, ...], words: str
) -> None:
    with pytest.raises(HTTPException) as e:
        parse_key(list(keys))
    assert e.value.status_code == 400 and words in str(e.value.detail)
    assert parse_key(['"a\\"b"']) == 'a"b' and parse_key([" tok-1 "]) == "tok-1"


def test_a_malformed_key_over_http_is_a_problem_not_an_action(tmp_path: Path) -> None:
    with _kit(tmp_path, "") as kit:
        sup = kit.user("sam", "supervisor")
        alert = _raise_lapse(kit)
        r = _post(kit, sup, f"/api/v1/alerts/{alert['id']}/acknowledge", {}, "a", "b")
        assert r.status_code == 400 and "Idempotency-Key" in r.text
        assert _audited(kit, alert["id"], "alert.acknowledged") == 0
        r = _post(kit, sup, "/api/v1/incidents/inc-none/acknowledge", {}, "x y")
        assert r.status_code == 400, r.text


def test_a_retry_while_the_first_still_runs_is_a_409() -> None:
    app: Any = type("App", (), {"state": State()})()  # the answers are kept by the app
    scope = {"type": "http", "method": "POST", "path": "/api/v1/alerts/a/acknowledge",
             "headers": [(b"idempotency-key", b'"slow"')], "query_string": b"", "app": app}
    request = Request(scope)
    svc: Any = type("Svc", (), {"site": type("Site", (), {"id": "s"})()})()  # per site
    who = Principal("user", "sam", frozenset({"supervisor"}))

    async def run() -> tuple[Any, int]:
        go = asyncio.Event()

        async def slow() -> dict[str, Any]:
            await go.wait()
            return {"done": True}

        first = asyncio.create_task(once(request, svc, who, None, slow))
        await asyncio.sleep(0)
        try:
            await once(request, svc, who, None, slow)
        except HTTPException as e:
            status = e.status_code
            assert "still being done" in str(e.detail)
        go.set()
        return await first, status

    answer, status = asyncio.run(run())
    assert status == 409 and answer.status_code == 200
