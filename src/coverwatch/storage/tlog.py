"""The site's transparency log in the database: append a leaf inside the caller's transaction.

A leaf is the canonical JSON of ``{"kind", "ref", ...}`` naming one stored record
and its content hash; its hash is RFC 9162's ``SHA-256(0x00 || leaf)``
(:mod:`coverwatch.domain.merkle`). Leaves are appended by the transaction that
stores the record, so a record and its leaf commit together or not at all.
Appends to one site's log are serialised: SQLite's write transaction is already
exclusive, PostgreSQL takes a transaction-scoped advisory lock per site.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from coverwatch.domain.merkle import leaf_hash
from coverwatch.storage.tables import tlog_leaves

__all__ = ["LIVE_STATES", "append_event_leaves", "append_leaf", "append_leaves",
           "append_record_leaf", "event_leaf", "event_leaves", "leaf_bytes", "leaf_hashes",
           "log_size", "open_alerts", "record_digest"]

# An alert in one of these states has not ended: no later transition need follow it.
LIVE_STATES = ("open", "acknowledged")


def leaf_bytes(kind: str, ref: str, body: Mapping[str, Any]) -> bytes:
    """The leaf's bytes: canonical JSON (sorted keys, no spaces) of kind, ref and body."""
    return orjson.dumps({**body, "kind": kind, "ref": ref}, option=orjson.OPT_SORT_KEYS)


def append_leaf(
    conn: Connection, site: str, kind: str, ref: str, body: Mapping[str, Any],
) -> int:
    """Append one leaf to ``site``'s log in ``conn``'s transaction; returns its index."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tlog:{site}"})
    size = log_size(conn, site)
    data = leaf_bytes(kind, ref, body)
    conn.execute(tlog_leaves.insert().values(
        site=site, idx=size, kind=kind, ref=ref, leaf=data.decode(),
        hash=leaf_hash(data).hex(),
    ))
    return size


def append_leaves(
    conn: Connection, site: str, leaves: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> int:
    """Append ``(kind, ref, body)`` leaves in order, as :func:`append_leaf` would one by one,
    with one size query and one insert (many alerts raised at once); returns the first
    index."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tlog:{site}"})
    size = log_size(conn, site)
    rows = []
    for i, (kind, ref, body) in enumerate(leaves):
        data = leaf_bytes(kind, ref, body)
        rows.append((site, size + i, kind, ref, data.decode(), leaf_hash(data).hex()))
    if rows:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(_INSERT_LEAF.format(mark=mark), rows)
    return size


def record_digest(value: Any) -> str:
    """SHA-256 (hex) of a record's canonical JSON: what alert, delivery and rule version
    leaves name, so an examiner recomputes it from the record in a pack."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def open_alerts(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The alerts of ``records`` still open or acknowledged, by id: what a signed tree head
    commits to (``open_alerts``, their :func:`record_digest`) and a pack carries, so an
    alert raised long before a pack's audit segment cannot be dropped from it unseen."""
    return sorted((dict(r) for r in records if r.get("state") in LIVE_STATES),
                  key=lambda r: str(r.get("id")))


def append_record_leaf(conn: Connection, site: str, kind: str, ref: str, record: Any) -> int:
    """Append ``{"hash": record_digest(record)}`` as a ``kind`` leaf naming ``ref``."""
    return append_leaf(conn, site, kind, ref, {"hash": record_digest(record)})


def _key_leaf(kind: str, ref: str, key: str, received: str | None = None) -> str:
    """``leaf_bytes(kind, ref, {"key": key})`` (with ``"received_us": received`` when
    given) as text, without building and sorting a dict per leaf: ``kind`` is a fixed
    word, ``ref`` a decimal id and ``received`` a JSON integer or null, so only the key
    needs JSON escaping ("key" < "kind" < "received_us" < "ref" is the sorted order)."""
    arrival = "" if received is None else f',"received_us":{received}'
    return f'{{"key":{orjson.dumps(key).decode()},"kind":"{kind}"{arrival},"ref":"{ref}"}}'


def event_leaf(event_id: int, key: str, received_us: int | None) -> str:
    """An event's leaf (version 2): its key and its arrival, ``received_us``, so the arrival
    that marks it late or back-dated is bound as well as what it says."""
    return _key_leaf("event", str(event_id), key,
                     "null" if received_us is None else str(int(received_us)))


# What JSON must escape in a string (orjson writes any other character as itself).
_PLAIN_KEYS = re.compile(r'["\\\x00-\x1f]')


def event_leaves(stored: Sequence[tuple[int, str]],
                 received: Mapping[str, int | None] | int) -> list[tuple[str, str, str]]:
    """``("event", ref, leaf)`` of each stored ``(id, key)``, as :func:`event_leaf` writes
    it (``received``: key -> arrival, or the one arrival of them all); when no key needs
    JSON escaping (the usual batch), written inline without a call and a JSON encoding per
    leaf (issue 25)."""
    same = received if isinstance(received, int) else None
    if _PLAIN_KEYS.search("".join(k for _, k in stored)) is not None:
        return [("event", str(i), event_leaf(i, k, same if same is not None
                                             else received.get(k)))  # type: ignore[union-attr]
                for i, k in stored]
    if same is not None:
        return [("event", str(i),
                 f'{{"key":"{k}","kind":"event","received_us":{same},"ref":"{i}"}}')
                for i, k in stored]
    leaves = []
    get = received.get  # type: ignore[union-attr]
    for i, k in stored:
        at = get(k)
        arrival = "null" if at is None else str(int(at))
        leaves.append(("event", str(i),
                       f'{{"key":"{k}","kind":"event","received_us":{arrival},"ref":"{i}"}}'))
    return leaves


def append_event_leaves(
    conn: Connection, site: str, stored: list[tuple[int, str]],
    reports: Sequence[Mapping[str, Any]] = (),
    received: Mapping[str, int | None] | int | None = None,
) -> None:
    """One leaf per newly stored event, ``{"key": <idempotence key>, "received_us": <its
    arrival>}`` (its key names kind, officer/post/flag, time, device and a digest of what it
    says; ``received``: key -> arrival as stored, or the arrival of every one), in id order,
    then one per newly stored device report (``{"key": <device|time|digest>}``)."""
    leaves = event_leaves(sorted(stored), {} if received is None else received)
    leaves += [("device-report", str(int(r["id"])),
                _key_leaf("device-report", str(int(r["id"])), str(r["key"])))
               for r in reports]
    if not leaves:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tlog:{site}"})
    size = log_size(conn, site)
    sha256 = hashlib.sha256
    n = len(leaves)
    # Columns, not a tuple per leaf: each goes into the flat VALUES by one slice.
    columns: list[list[Any]] = [[site] * n, list(range(size, size + n)), [], [], [], []]
    kinds, refs, texts, hashes = columns[2:]
    for kind, ref, leaf in leaves:
        kinds.append(kind)
        refs.append(ref)
        texts.append(leaf)
        hashes.append(sha256(b"\x00" + leaf.encode()).hexdigest())  # merkle.leaf_hash
    if conn.dialect.name == "sqlite":
        _sqlite_leaves(conn, columns)
        return
    # The driver's executemany with plain tuples: SQLAlchemy's per-row parameter
    # processing of 2 000 leaves cost more than the inserts on the ingest path.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(_INSERT_LEAF.format(mark=mark), list(zip(*columns, strict=True)))


_LEAF_CHUNK = 500  # x 6 columns: well under SQLite's 32 766 bound parameters
_SQLITE_LEAVES: dict[int, str] = {}


def _sqlite_leaves(conn: Connection, columns: list[list[Any]]) -> None:
    # Multi-row VALUES, one statement per 500 leaves: executemany steps once per row and
    # the driver lets go of the GIL at each step, so the store thread waited for it again
    # 2 000 times a batch behind the event loop (issue 25).
    n = len(columns[0])
    flat: list[Any] = [None] * (6 * n)
    for c, values in enumerate(columns):
        flat[c::6] = values
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for i in range(0, n, _LEAF_CHUNK):
            rows = min(_LEAF_CHUNK, n - i)
            sql = _SQLITE_LEAVES.get(rows)
            if sql is None:
                sql = _SQLITE_LEAVES[rows] = (
                    "INSERT INTO tlog_leaves (site, idx, kind, ref, leaf, hash) VALUES "
                    + ",".join(["(?,?,?,?,?,?)"] * rows))
            cursor.execute(sql, flat[6 * i:6 * (i + rows)])
    finally:
        cursor.close()


_INSERT_LEAF = ("INSERT INTO tlog_leaves (site, idx, kind, ref, leaf, hash) "
                "VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})")


def log_size(conn: Connection, site: str) -> int:
    # Driver SQL: once per commit, where the statement's compile and cache lookup cost
    # more than the indexed MAX itself.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    last = conn.exec_driver_sql(
        f"SELECT max(idx) FROM tlog_leaves WHERE site = {mark}", (site,)).scalar()
    return 0 if last is None else int(last) + 1


def leaf_hashes(conn: Connection, site: str, size: int | None = None) -> list[bytes]:
    """The first ``size`` (None: all) leaf hashes of ``site``'s log, in order, as stored."""
    q = select(tlog_leaves.c.hash).where(tlog_leaves.c.site == site).order_by(tlog_leaves.c.idx)
    if size is not None:
        q = q.where(tlog_leaves.c.idx < size)
    return [bytes.fromhex(h) for (h,) in conn.execute(q)]
