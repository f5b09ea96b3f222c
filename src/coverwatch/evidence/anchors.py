"""Signed anchors of the audit chain's head, kept outside the database, and checking against them.

An anchor is one JSON line: the head entry's id and hash, when, for which site,
the signer's public key, and an Ed25519 signature over the rest (canonical
JSON). The server appends one to its anchor file at an interval (and sends it
to ``COVERWATCH_ANCHOR_URL`` if set); ``coverwatch audit anchor`` does it on demand.

:func:`verify_anchored` walks the chain with the MAC key and compares it with
every anchor, naming what it finds: ``truncated`` (entries after the chain's end
were anchored), ``wiped`` (an empty log with anchors), ``rewritten`` (an
anchored entry's hash differs: the chain was recomputed), ``forged`` (an entry
without a valid MAC after the last anchor), ``edited``/``deleted`` (a broken
chain), and ``bad-anchor`` (an anchor whose signature or key does not verify).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from coverwatch.evidence.keys import SigningKey, key_fingerprint, verify_signature
from coverwatch.storage import Store, audit_head, verify_audit
from coverwatch.storage.auditkeys import AuditKeyring
from coverwatch.storage.private import private_dir
from coverwatch.storage.sites import DEPLOYMENT
from coverwatch.storage.tables import audit

__all__ = ["ANCHOR_KIND", "AnchorCheck", "Finding", "append_anchor", "append_signed",
           "canonical", "load_anchors", "load_signed", "make_anchor", "send_anchor",
           "sign_document", "verify_anchored", "verify_document"]

ANCHOR_KIND = "coverwatch.audit-anchor"
_DEPLOYMENT_CHAIN = DEPLOYMENT  # the name the deployment's own chain is anchored under
log = logging.getLogger("coverwatch.evidence")


def canonical(value: Any) -> bytes:
    """The canonical JSON that signatures and hashes cover (sorted keys, no spaces)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


_canonical = canonical


def sign_document(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """``body`` with ``public_key``, ``key_id`` and ``signature`` over the rest added."""
    doc = {**body, "public_key": key.public_b64, "key_id": key_fingerprint(key.public_b64)}
    doc["signature"] = key.sign(_canonical(doc))
    return doc


def verify_document(doc: dict[str, Any], trusted: tuple[str, ...] | None) -> str | None:
    """None if ``doc``'s signature verifies under a trusted key, else why not."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    public = doc.get("public_key")
    if not isinstance(public, str) or not isinstance(doc.get("signature"), str):
        return "not signed"
    if trusted is not None and public not in trusted:
        return f"signed by an untrusted key {key_fingerprint(public)}"
    if not verify_signature(public, _canonical(body), doc["signature"]):
        return "signature does not match (edited or forged)"
    return None


def make_anchor(store: Store, key: SigningKey, site: str) -> dict[str, Any]:
    """A signed anchor of the current head (head_id 0 for an empty log)."""
    head = audit_head(store)
    at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return sign_document({
        "kind": ANCHOR_KIND, "v": 1, "site": site, "at": at,
        "head_id": 0 if head is None else head.id,
        "head_hash": None if head is None else head.hash,
    }, key)


def append_signed(path: Path, doc: dict[str, Any]) -> None:
    """Append one signed document as a line (file mode 0600) and force it to disk: anchor
    files and tree head files are only ever appended to, both through here."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, _canonical(doc) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


append_anchor = append_signed


def send_anchor(url: str, anchor: dict[str, Any]) -> bool:
    """Send an anchor off the machine: an https webhook gets the JSON, else Apprise (mailto: …)."""
    body = _canonical(anchor)
    try:
        if url.startswith(("http://", "https://")):
            import httpx

            r = httpx.post(url, content=body, headers={"content-type": "application/json"},
                           timeout=10.0)
            return r.status_code < 300
        import apprise

        sender = apprise.Apprise()
        if not sender.add(url):
            return False
        title = f"coverwatch audit anchor: {anchor['site']} entry {anchor['head_id']}"
        return bool(sender.notify(body=body.decode(), title=title))
    except Exception as exc:  # the anchor is in the file already; sending is extra
        log.warning("audit anchor not sent: %s", type(exc).__name__)
        return False


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    message: str


@dataclass(slots=True)
class AnchorCheck:
    """What :func:`verify_anchored` found; ``ok`` when there are no findings."""

    entries: int
    anchors: int
    findings: list[Finding] = field(default_factory=list)
    last_anchor: dict[str, Any] | None = None
    mac_checked: bool = False
    site: str | None = None
    other_sites: dict[str, int] = field(default_factory=dict)
    refusal: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def sound(self) -> bool:
        """No findings *and* at least one anchor checked: only then is the log called sound."""
        return self.ok and self.anchors > 0 and self.refusal is None

    def as_dict(self) -> dict[str, Any]:
        last = self.last_anchor
        return {"ok": self.ok, "sound": self.sound, "entries": self.entries,
                "anchors": self.anchors, "site": self.site, "other_sites": self.other_sites,
                "refusal": self.refusal, "mac_checked": self.mac_checked,
                "findings": [{"kind": f.kind, "message": f.message} for f in self.findings],
                "last_anchor": None if last is None else
                {"at": last.get("at"), "head_id": last.get("head_id"),
                 "key_id": last.get("key_id")}}


def load_signed(
    path: Path, kind: str, finding: str, what: str,
) -> tuple[list[tuple[int, dict[str, Any]]], list[Finding]]:
    """Every line of ``path`` that is a document of ``kind``, with its line number, and a
    ``finding`` for each line that is not (``what``: how to name such a document)."""
    docs: list[tuple[int, dict[str, Any]]] = []
    bad: list[Finding] = []
    if not path.exists():
        return docs, bad
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(Finding(finding, f"{path}:{n}: not JSON"))
            continue
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            bad.append(Finding(finding, f"{path}:{n}: not {what}"))
            continue
        docs.append((n, doc))
    return docs, bad


def load_anchors(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Finding]]:
    """Every anchor line of ``path`` with its line number, and the lines that are not anchors."""
    if not path.exists():
        raise FileNotFoundError(path)  # an anchor file named but absent is an error, as before
    return load_signed(path, ANCHOR_KIND, "bad-anchor", "an audit anchor")


def _hash_of(store: Store, entry_id: int) -> str | None:
    from sqlalchemy import select

    with store.reading() as conn:
        row = conn.execute(select(audit.c.hash).where(audit.c.site == store.site,
                                                      audit.c.id == entry_id)).first()
    return None if row is None else str(row.hash)


def _choose_site(
    signed: list[tuple[int, dict[str, Any]]], site: str | None,
) -> tuple[str | None, str | None]:
    """The site to check and why none could be chosen.

    The site comes from the caller or from the anchors, never from the database:
    an insider can change the site id stored there so that no anchor matches."""
    if site is not None:
        return site, None
    named = sorted({str(d.get("site")) for _, d in signed} - {_DEPLOYMENT_CHAIN})
    if len(named) == 1:
        return named[0], None
    if not named and signed:
        return _DEPLOYMENT_CHAIN, None
    if not named:
        return None, "no anchors to check against: the log cannot be called sound"
    return None, (f"the anchors name several sites ({', '.join(named)}): say which one "
                  "this database holds (--site)")


def verify_anchored(
    store: Store, anchor_file: Path | None, *, keyring: AuditKeyring | None,
    trusted: tuple[str, ...] | None, site: str | None = None, unsealed_before: int = 0,
    stored_site: str | None = None,
) -> AnchorCheck:
    """Check the chain, its MACs and every anchor; see the module docstring.

    ``site``: whose anchors to check (None: the one site the anchors name).
    ``stored_site``: the site id the database claims; a different one than the
    anchors' is named (``site-changed``), never a reason to skip them."""
    anchors: list[tuple[int, dict[str, Any]]] = []
    findings: list[Finding] = []
    if anchor_file is not None:
        anchors, findings = load_anchors(anchor_file)
    signed: list[tuple[int, dict[str, Any]]] = []
    for n, doc in anchors:
        why = verify_document(doc, trusted)
        if why is not None:
            findings.append(Finding("bad-anchor", f"anchor on line {n}: {why}"))
        else:
            signed.append((n, doc))
    site, refusal = _choose_site(signed, site)
    good = [(n, d) for n, d in signed if site is None or d.get("site") == site]
    other_sites: dict[str, int] = {}
    for _, d in signed:
        if site is not None and d.get("site") != site:
            other_sites[str(d.get("site"))] = other_sites.get(str(d.get("site")), 0) + 1
    if site is not None and stored_site is not None and stored_site != site:
        findings.append(Finding("site-changed", f"the database names its site {stored_site!r} "
                                                f"but it is checked as {site!r}: the stored "
                                                "site id was changed (or the wrong database)"))
    chain = verify_audit(store, keyring=keyring, unsealed_before=unsealed_before)
    last_id = chain.head.id if chain.ok and chain.head else None
    anchored_max = max((int(d["head_id"]) for _, d in good), default=0)
    if not chain.ok:
        bad = chain.first_bad_id
        if "written without the audit key" in chain.reason:
            kind = "forged" if bad is not None and bad > anchored_max else "rewritten"
        elif "missing" in chain.reason:
            kind = "deleted"
        else:
            kind = "edited"
        findings.append(Finding(kind, chain.reason))
    # Anchors against the stored chain (by direct lookup: a broken chain still has rows).
    stored_max = _max_id(store)
    for n, doc in good:
        hid = int(doc["head_id"])
        if hid == 0:
            continue
        where = f"anchor on line {n} ({doc.get('at')})"
        if stored_max == 0:
            findings.append(Finding("wiped", f"the audit log is empty but {where} recorded "
                                             f"entry {hid}: the log was wiped"))
            break
        if stored_max < hid:
            findings.append(Finding("truncated", f"the log ends at entry {stored_max} but {where} "
                                                 f"recorded entry {hid}: entries "
                                                 f"{stored_max + 1}-{hid} were removed"))
            continue
        if _hash_of(store, hid) != doc.get("head_hash"):
            findings.append(Finding("rewritten", f"entry {hid} differs from {where}: the chain "
                                                 "was rewritten and its hashes recomputed"))
    if refusal is None and not good:
        refusal = f"no anchors of site {site!r} to check against: the log cannot be called sound"
    return AnchorCheck(chain.entries if last_id is None else last_id, len(good), findings,
                       good[-1][1] if good else None, keyring is not None, site, other_sites,
                       refusal)


def _max_id(store: Store) -> int:
    from sqlalchemy import func, select

    with store.reading() as conn:
        q = select(func.max(audit.c.id)).where(audit.c.site == store.site)
        return int(conn.execute(q).scalar() or 0)
