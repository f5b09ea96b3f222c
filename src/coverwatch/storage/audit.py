"""The audit log: append-only and hash-chained, so that edits and deletions show.

Each entry's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no
spaces) of its id, at, actor, action, subject, details and prev_hash; the first
entry's prev_hash is 64 zeros. Appends are serialised (an in-process lock plus
``BEGIN IMMEDIATE`` on SQLite, ``LOCK TABLE … EXCLUSIVE`` on PostgreSQL) so
concurrent appends cannot fork the chain. :func:`verify_audit` walks the chain.
A deleted tail leaves a valid shorter chain; keep an :class:`AuditHead` from
:func:`audit_head` elsewhere (an evidence export, a log line) and pass it to
:func:`verify_audit` to detect that too.

Details must never carry secrets: keys that name one (password, token, …) and
values that look like a coverwatch token are refused.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from coverwatch.errors import StoreError
from coverwatch.storage.auditkeys import AuditKeyring
from coverwatch.storage.auth import TOKEN_PREFIXES
from coverwatch.storage.base import StoreBase
from coverwatch.storage.tables import audit
from coverwatch.storage.tlog import append_leaves

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditHead",
    "AuditRepository",
    "VerifyResult",
    "audit_head",
    "entry_hash",
    "record_device_change",
    "record_login",
    "record_logout",
    "record_site_reload",
    "record_user_change",
    "verify_audit",
]

GENESIS_HASH = "0" * 64
_SECRET_KEY_WORDS = ("password", "passwd", "secret", "token", "cookie", "csrf", "apikey", "api_key")
_TOKEN_VALUE_PREFIXES = tuple(TOKEN_PREFIXES.values())


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the chain, as stored."""

    id: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    mac: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-friendly values (for the API and evidence exports)."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "mac": self.mac,
        }


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The newest entry's id and hash: an anchor to check the chain's tail against."""

    id: int
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify_audit`. ``first_bad_id`` is the first stored entry that fails."""

    ok: bool
    entries: int
    first_bad_id: int | None
    reason: str
    head: AuditHead | None = None


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def entry_hash(
    id: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex of the canonical JSON of one entry's content."""
    body = {
        "id": id,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical(body)).hexdigest()


def _check_no_secrets(value: Any, path: str = "details") -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise StoreError(f"audit {path} keys must be strings")
            lowered = key.lower()
            if any(word in lowered for word in _SECRET_KEY_WORDS):
                raise StoreError(
                    f"audit {path}.{key} looks like a secret; secrets are never logged"
                )
            _check_no_secrets(inner, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _check_no_secrets(inner, f"{path}[{i}]")
    elif isinstance(value, str) and value.startswith(_TOKEN_VALUE_PREFIXES):
        raise StoreError(f"audit {path} looks like a token; secrets are never logged")


def _prepare_details(details: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Check details for secrets; return their canonical JSON and its parsed value."""
    body = dict(details or {})
    _check_no_secrets(body)
    # Normalise through JSON so the hashed value is exactly what is stored.
    details_text = _canonical(body).decode()
    return details_text, orjson.loads(details_text)


def _login_action(ok: bool) -> str:
    return "login.ok" if ok else "login.failed"


def _wall_clock_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        row.id, row.at, row.actor, row.action, row.subject, orjson.loads(row.details),
        row.prev_hash, row.hash, row.mac,
    )  # fmt: skip


class AuditRepository(StoreBase):
    """Audit methods of the store. ``audit_keyring`` (set by ``open_store``) seals entries."""

    audit_keyring: AuditKeyring | None = None

    def _lock_audit(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            # Blocks other appenders (and writers) until commit; plain reads go on.
            conn.execute(text("LOCK TABLE audit IN EXCLUSIVE MODE"))
        # SQLite: the write transaction began with BEGIN IMMEDIATE, which is the lock.

    def append_audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        *,
        at: str | None = None,
    ) -> AuditEntry:
        """Append one entry to the chain, in its own transaction; returns it."""
        prepared = _prepare_details(details)
        with self._audit_write() as conn:
            return self._append_audit_locked(conn, actor, action, subject, prepared, at)

    def audit_change(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Record an administrative change (user, device, token, site); see :meth:`append_audit`."""
        return self.append_audit(actor, action, subject, details)

    def record_login_attempt(self, username: str, ok: bool, client: str) -> AuditEntry:
        """A login attempt from ``client`` (its address). Never pass the password."""
        details: dict[str, Any] = {"remote": client} if client else {}
        return self.append_audit(username, _login_action(ok), f"user:{username}", details)

    @contextmanager
    def _audit_write(self) -> Iterator[Connection]:
        """A write transaction holding the audit chain's locks (in-process and database)."""
        with self._audit_lock, self._write() as conn:
            self._lock_audit(conn)
            yield conn

    def _append_audit_locked(
        self,
        conn: Connection,
        actor: str,
        action: str,
        subject: str,
        prepared: tuple[str, dict[str, Any]],
        at: str | None = None,
    ) -> AuditEntry:
        """Append inside a transaction from :meth:`_audit_write` (commits with it)."""
        return self._append_audits_locked(conn, [(actor, action, subject, prepared)], at=at)[0]

    def _append_audits_locked(
        self, conn: Connection,
        entries: Sequence[tuple[str, str, str, tuple[str, dict[str, Any]]]],
        leaves_after: Sequence[Sequence[tuple[str, str, Mapping[str, Any]]]] = (),
        at: str | None = None,
    ) -> list[AuditEntry]:
        """:meth:`_append_audit_locked` of many ``(actor, action, subject, prepared)`` in
        order, with one query and one insert for them all (and one for their leaves);
        ``leaves_after[i]``: leaves appended right after entry ``i``'s, as a caller
        appending one entry and then its record's leaf would."""
        if not entries:
            return []
        stamp = _wall_clock_iso() if at is None else at
        last = conn.execute(
            select(audit.c.id, audit.c.hash).where(audit.c.site == self.site)
            .order_by(audit.c.id.desc()).limit(1)
        ).first()
        new_id = 1 if last is None else int(last.id) + 1
        prev = GENESIS_HASH if last is None else str(last.hash)
        out: list[AuditEntry] = []
        rows: list[dict[str, Any]] = []
        leaves: list[tuple[str, str, Mapping[str, Any]]] = []
        for i, (actor, action, subject, (details_text, body)) in enumerate(entries):
            digest = entry_hash(new_id, stamp, actor, action, subject, body, prev)
            mac = None if self.audit_keyring is None else self.audit_keyring.seal(digest)
            rows.append({"site": self.site, "id": new_id, "at": stamp, "actor": actor,
                         "action": action, "subject": subject, "details": details_text,
                         "prev_hash": prev, "hash": digest, "mac": mac})
            out.append(AuditEntry(new_id, stamp, actor, action, subject, body, prev, digest,
                                  mac))
            leaves.append(("audit", str(new_id), {"hash": digest}))
            if i < len(leaves_after):
                leaves += leaves_after[i]
            new_id, prev = new_id + 1, digest
        conn.execute(audit.insert(), rows)
        append_leaves(conn, self.site, leaves)
        return out

    def audit_entries(self, after_id: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries with id > ``after_id``, oldest first."""
        q = (select(audit).where(audit.c.site == self.site, audit.c.id > after_id)
             .order_by(audit.c.id).limit(limit))
        with self.reading() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def _audit_rows(self, batch: int = 1000) -> Iterator[Any]:
        after = None
        while True:
            q = select(audit).where(audit.c.site == self.site).order_by(audit.c.id).limit(batch)
            if after is not None:
                q = q.where(audit.c.id > after)
            with self.reading() as conn:
                rows = conn.execute(q).all()
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].id


def audit_head(store: AuditRepository) -> AuditHead | None:
    """The newest entry's id and hash, or None if the log is empty."""
    with store.reading() as conn:
        row = conn.execute(
            select(audit.c.id, audit.c.hash).where(audit.c.site == store.site)
            .order_by(audit.c.id.desc()).limit(1)
        ).first()
    return None if row is None else AuditHead(int(row.id), str(row.hash))


def verify_audit(
    store: AuditRepository,
    expect_head: AuditHead | None = None,
    *,
    keyring: AuditKeyring | None = None,
    unsealed_before: int = 0,
) -> VerifyResult:
    """Walk the chain and report the first entry that breaks it.

    Detects an edited entry (its hash no longer matches its content), a
    deleted entry (an id gap, or a prev_hash that does not match the entry
    before) and, given ``expect_head``, a truncated or replaced tail. Given the
    ``keyring``, every entry from ``unsealed_before`` on must carry a valid MAC:
    an entry written without the key (a forged append, a recomputed chain) fails.
    """
    expected_id = 1
    prev = GENESIS_HASH
    count = 0
    for row in store._audit_rows():
        count += 1
        bad = _check_row(row, expected_id, prev)
        if bad is None and keyring is not None and row.id >= unsealed_before:
            why = keyring.check(str(row.hash), row.mac)
            if why is not None:
                bad = f"entry {row.id} {why}: written without the audit key (forged or rewritten)"
        if bad is not None:
            return VerifyResult(False, count, int(row.id), bad)
        if expect_head is not None and row.id == expect_head.id and row.hash != expect_head.hash:
            return VerifyResult(
                False, count, int(row.id), f"entry {row.id} is not the expected head"
            )
        expected_id = int(row.id) + 1
        prev = str(row.hash)
    if expect_head is not None and expected_id - 1 < expect_head.id:
        return VerifyResult(
            False, count, None,
            f"chain ends at entry {expected_id - 1} but entry {expect_head.id} was recorded: "
            "the tail was removed",
        )  # fmt: skip
    head = None if count == 0 else AuditHead(expected_id - 1, prev)
    return VerifyResult(True, count, None, f"{count} entries verified", head)


def _check_row(row: Any, expected_id: int, prev: str) -> str | None:
    if row.id != expected_id:
        if row.id < expected_id:
            return f"entry {row.id} is out of sequence"
        missing = f"{expected_id}" if row.id == expected_id + 1 else f"{expected_id}-{row.id - 1}"
        return f"entry {missing} missing before entry {row.id}"
    if row.prev_hash != prev:
        return f"entry {row.id} prev_hash does not match the entry before it"
    try:
        details = orjson.loads(row.details)
    except orjson.JSONDecodeError:
        return f"entry {row.id} details are not valid JSON"
    digest = entry_hash(
        int(row.id), row.at, row.actor, row.action, row.subject, details, row.prev_hash
    )
    if digest != row.hash:
        return f"entry {row.id} content does not match its hash (edited)"
    return None


# -- what the server audits ---------------------------------------------------


def record_login(
    store: AuditRepository, username: str, ok: bool, *,
    remote: str | None = None, reason: str | None = None,
) -> AuditEntry:
    """A login attempt. Never pass the password."""
    details: dict[str, Any] = {}
    if remote is not None:
        details["remote"] = remote
    if reason is not None:
        details["reason"] = reason
    return store.append_audit(username, _login_action(ok), f"user:{username}", details)


def record_logout(store: AuditRepository, username: str) -> AuditEntry:
    return store.append_audit(username, "logout", f"user:{username}")


def record_user_change(
    store: AuditRepository,
    actor: str,
    username: str,
    change: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """``change``: create, roles, password, deactivate, … (action ``user.<change>``)."""
    return store.append_audit(actor, f"user.{change}", f"user:{username}", details)


def record_device_change(
    store: AuditRepository,
    actor: str,
    device: str,
    change: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """``change``: create, rotate, officer, deactivate, … (action ``device.<change>``)."""
    return store.append_audit(actor, f"device.{change}", f"device:{device}", details)


def record_site_reload(
    store: AuditRepository,
    actor: str,
    site: str,
    ok: bool,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """A site file (re)load; put e.g. its content hash or the problems in ``details``."""
    action = "site.reload" if ok else "site.reload_failed"
    return store.append_audit(actor, action, f"site:{site}", details)
