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
waits for a witness. The queues outlive a restart: they are kept in
``tree-heads.pending.json`` beside the heads file (mode 0600, replaced atomically at each
change; each witness named by a digest of its address, which may carry a token), and
read back when the witnesses are set up again. The server and the CLI (``audit head``)
may both queue heads at once: each change is made under an exclusive lock
(``fcntl.flock`` on ``tree-heads.pending.json.lock``) to the queues as they are on disk
(this process's heads added, the ones it delivered removed; queues of witnesses it does
not know kept), so no queued head is lost to the other's write.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from coverwatch.evidence.anchors import append_signed
from coverwatch.evidence.anchors import canonical as _canonical
from coverwatch.evidence.timestamps import Poster, http_post, timestamp_head
from coverwatch.notify.messages import redact_url
from coverwatch.storage.private import private_dir

__all__ = ["QUEUE_LIMIT", "WitnessState", "Witnesses", "pending_file", "send_head"]

log = logging.getLogger("coverwatch.evidence")
QUEUE_LIMIT = 1000  # heads kept per unreachable witness; the oldest go first past it


def pending_file(heads_path: Path) -> Path:
    """Where the witnesses' queues are kept: ``tree-heads.pending.json`` beside the heads."""
    return heads_path.with_name(heads_path.stem + ".pending.json")


def _queue_key(kind: str, address: str) -> str:
    return f"{kind}:{hashlib.sha256(address.encode()).hexdigest()[:16]}"


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


def _head_id(head: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(head)).hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the queues file, across processes (its own ``.lock`` file:
    the queues file itself is replaced by rename)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_queues(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The queues as kept on disk (empty if none or unreadable)."""
    try:
        saved = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        log.error("witness queues in %s not read: %s", path, exc)
        return {}
    if not isinstance(saved, dict):
        return {}
    return {str(k): [h for h in v if isinstance(h, dict)] for k, v in saved.items()
            if isinstance(v, list)}


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
        self._saved: dict[str, list[dict[str, Any]]] = {}
        self._restore()

    def _keyed(self) -> dict[str, WitnessState]:
        """Every witness by the name its queue is kept under."""
        out = {} if self._tsa is None or self.tsa_url is None else {
            _queue_key("tsa", self.tsa_url): self._tsa}
        return out | {_queue_key("copy", t): st for t, st in self._targets.items()}

    def _restore(self) -> None:
        saved = _read_queues(pending_file(self.heads_path))
        for key, state in self._keyed().items():
            state.pending = saved.get(key, [])[-QUEUE_LIMIT:]
        self._saved = {k: list(v.pending) for k, v in self._keyed().items()}

    def _save(self) -> None:
        """Keep the queues on disk if they changed (0600, written whole, then renamed),
        merged under the lock with what another process queued meanwhile."""
        now = {k: list(v.pending) for k, v in self._keyed().items()}
        if now == self._saved:
            return
        path = pending_file(self.heads_path)
        private_dir(path.parent)
        with _locked(path):
            disk = _read_queues(path)
            merged: dict[str, list[dict[str, Any]]] = {}
            for key, state in self._keyed().items():
                before = {_head_id(h) for h in self._saved.get(key, [])}
                mine = {_head_id(h) for h in now[key]}
                gone = before - mine  # delivered by this process since it last saved
                queue = [h for h in disk.get(key, []) if _head_id(h) not in gone]
                seen = {_head_id(h) for h in queue}
                queue += [h for h in now[key] if _head_id(h) not in seen]
                merged[key] = queue[-QUEUE_LIMIT:]
                state.pending = list(merged[key])
            out = {k: v for k, v in disk.items() if k not in merged and v}
            out |= {k: v for k, v in merged.items() if v}
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, orjson.dumps(out))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        self._saved = merged

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
            self._keep()  # before trying: a witness that hangs, then a crash, loses nothing
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
            self._keep()
            return self.failing()

    def _keep(self) -> None:
        try:
            self._save()
        except OSError as exc:  # the queues stay in memory; say so, never stop
            log.error("witness queues not kept on disk: %s", exc)

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
