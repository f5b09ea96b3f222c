"""Witnesses of signed tree heads: an RFC 3161 authority and copies kept outside the operator.

Each head the server signs (at an interval, or on demand) is queued for the
time-stamping authority (``Settings.tsa_url``: its reply is kept beside the heads, see
:mod:`coverwatch.evidence.timestamps`) and for every destination of
``Settings.witnesses``: a file (an absolute path or ``file://``; the head's line is
appended, 0600, fsync), a webhook (``http(s)://``, the head's JSON POSTed) or any other
Apprise URL (``mailto://``, …; the head as the message body). A witness that cannot
be reached keeps its heads queued, oldest first, and gets them again at the next
attempt; failures are counted and the last error kept for ``/metrics`` and the audit
page. Sending runs off the event loop and never holds a store lock, so ingest never
waits for a witness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from coverwatch.evidence.anchors import append_signed
from coverwatch.evidence.anchors import canonical as _canonical
from coverwatch.evidence.timestamps import Poster, http_post, timestamp_head
from coverwatch.notify.messages import redact_url

__all__ = ["QUEUE_LIMIT", "WitnessState", "Witnesses", "send_head"]

log = logging.getLogger("coverwatch.evidence")
QUEUE_LIMIT = 1000  # heads kept per unreachable witness; the oldest go first past it


def _redact(url: str) -> str:
    return url if url.startswith(("/", "file:")) else redact_url(url)


def send_head(target: str, head: dict[str, Any]) -> None:
    """Give ``head`` to one destination; raises if it was not taken."""
    if target.startswith(("/", "file://")):
        append_signed(Path(target.removeprefix("file://")), head)
        return
    body = _canonical(head)
    if target.startswith(("http://", "https://")):
        import httpx

        httpx.post(target, content=body, headers={"content-type": "application/json"},
                   timeout=10.0).raise_for_status()
        return
    import apprise

    sender = apprise.Apprise()
    if not sender.add(target):
        raise ValueError("not a notification URL Apprise knows")
    title = f"coverwatch tree head: {head.get('site')}, {head.get('size')} leaves"
    if not sender.notify(body=body.decode(), title=title):
        raise RuntimeError("Apprise could not deliver it")


@dataclass(slots=True)
class WitnessState:
    """One witness: what it was given, what failed, what waits for it."""

    target: str  # redacted: addresses may carry tokens
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_ok: float | None = None  # wall clock, s
    last_error: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "pending": len(self.pending),
                "last_ok": self.last_ok, "last_error": self.last_error}


class Witnesses:
    """The witnesses of one site's heads (see the module doc)."""

    def __init__(self, targets: Sequence[str], tsa_url: str | None, heads_path: Path, *,
                 post: Poster = http_post,
                 send: Callable[[str, dict[str, Any]], None] = send_head) -> None:
        self.heads_path, self._post, self._send = heads_path, post, send
        self.tsa_url = tsa_url
        self._targets = {t: WitnessState(_redact(t)) for t in dict.fromkeys(targets)}
        self._tsa = None if tsa_url is None else WitnessState(_redact(tsa_url))
        self._lock = threading.Lock()

    def states(self) -> dict[str, WitnessState]:
        """Every witness by kind and (redacted) name: ``tsa`` first, then the destinations."""
        out = {} if self._tsa is None else {"tsa": self._tsa}
        return out | {f"copy:{s.target}": s for s in self._targets.values()}

    def pending(self) -> int:
        return sum(len(s.pending) for s in self.states().values())

    def failing(self) -> list[str]:
        """The witnesses whose last attempt failed, each with its error."""
        return [(f"the time-stamping authority at {s.target} gave no time-stamp"
                 if name == "tsa" else f"{s.target} did not take the head") + f" ({s.last_error})"
                for name, s in self.states().items() if s.pending and s.last_error]

    def witness(self, head: dict[str, Any]) -> list[str]:
        """Queue ``head`` for every witness and try them now; the failures (see ``flush``)."""
        with self._lock:
            for state in self.states().values():
                state.pending.append(head)
                if len(state.pending) > QUEUE_LIMIT:
                    del state.pending[0]
                    state.dropped += 1
        return self.flush()

    def flush(self) -> list[str]:
        """Give each witness what waits for it, oldest first, stopping at its first
        failure; returns those failures (``name: error``)."""
        with self._lock:
            if self._tsa is not None and self.tsa_url is not None:
                url = self.tsa_url
                self._drain("tsa", self._tsa,
                            lambda h: timestamp_head(h, url, self.heads_path, self._post))
            for target, state in self._targets.items():
                self._drain(f"copy:{state.target}", state, partial(self._send, target))
            return self.failing()

    def _drain(self, name: str, state: WitnessState, give: Callable[[dict[str, Any]], Any]
               ) -> None:
        while state.pending:
            try:
                give(state.pending[0])
            except Exception as exc:  # any failure to reach a witness: kept, retried
                state.failed += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("tree head not given to witness %s: %s", name, state.last_error)
                return
            state.pending.pop(0)
            state.sent += 1
            state.last_ok, state.last_error = time.time(), ""

    def as_dict(self) -> dict[str, Any]:
        return {name: s.as_dict() for name, s in self.states().items()}
