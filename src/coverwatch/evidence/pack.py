"""Evidence packs: one zip an investigator can take away and check without the server.

Members (every one's SHA-256 in ``manifest.json``, which is signed with Ed25519):

* ``report.pdf`` — the human-readable report (``evidence/pdf.py``);
* ``events.jsonl`` — every stored event in the window, as stored;
* ``rule-versions.json`` — the site files in force during the window, the first at ``since``;
* ``engine-state.json`` — the engine's state at ``since`` (duty, memberships, open lapses,
  flags, gates), so that the window can be re-run exactly;
* ``lapses.json`` — the report's lapses (clipped at the window's edges, and marked so);
* ``alerts.json``, ``orders.json``, ``roster.json`` — records of the window;
* ``deliveries.json`` — every recorded notification attempt about those alerts (who was
  notified, at which level, when; failed ones as failed): the report's "who was notified";
* ``audit.jsonl`` and ``audit-anchor.json`` — the audit entries of the window (a contiguous
  run of the chain that follows the window: entries recorded in it, and those about its
  alerts and back-dated events, :mod:`coverwatch.evidence.segment`) and a signed anchor of
  the chain's head at export;
* ``purges.json`` — what retention purged that touches the window (each purge record with
  its audit entry, proved under ``purges`` in ``proofs.json``) and the spans without data,
  where no lapse is derived (:mod:`coverwatch.evidence.window`);
* ``daily-reports.json`` — the daily activity report of each local day of the window
  (stints per officer, people's actions apart from automatic ones, each note once);
* ``open-alerts.json`` — every alert open or acknowledged in the log the pack's tree head
  covers, whose digest the head signs (``open_alerts``): an alert raised before the audit
  segment and never changed since is still shown (and cannot be dropped unseen);
* ``briefing.json`` — every shift, orders version and orders acknowledgement of the site,
  whose digest the head signs (``briefing``): ``roster.json`` and ``orders.json`` must be
  its view of the window (:mod:`coverwatch.evidence.briefing`), so neither can be altered
  or thinned in a re-signed pack;
* ``verify_pack.py`` — the standalone verifier, one file (:mod:`.verifierfile`);
* ``tree-head.json`` and ``proofs.json`` (version 2) — a signed head of the site's
  transparency log and every event's and audit entry's inclusion proof against it
  (:mod:`coverwatch.evidence.packproofs`).

:func:`verify_pack` runs every check of the standalone verifier
(:mod:`coverwatch.evidence.standalone`: digests, signatures, audit links, tree head and
proofs, purge records, lapse alerts against lapses), then checks the deliveries against the
alerts and the audit segment, re-runs the engine and compares the lapses and the spans
without data, and re-renders the PDF from the pack's data and compares it byte for byte;
each failure names the part.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from coverwatch.domain.time import format_time, parse_time
from coverwatch.engine import RuleStats, engine_state
from coverwatch.evidence.anchors import make_anchor, sign_document
from coverwatch.evidence.briefing import briefing_records, briefing_view
from coverwatch.evidence.keys import SigningKey
from coverwatch.evidence.packproofs import HeadMoved, pack_head, pack_proofs, pack_records
from coverwatch.evidence.purged import purge_records
from coverwatch.evidence.segment import audit_segment, reach_head
from coverwatch.evidence.standalone import check_pack
from coverwatch.evidence.treeheads import heads_file
from coverwatch.evidence.verifierfile import VERIFIER_NAME, verifier_source
from coverwatch.evidence.window import no_data_spans, run_window
from coverwatch.reports.history import run_engine
from coverwatch.reports.notified import load_delivery_rows
from coverwatch.storage import Store
from coverwatch.storage.tlog import open_alerts
from coverwatch.storage.versions import SiteVersion

__all__ = ["PACK_KIND", "PackCheck", "compare_lapses", "export_pack", "render_pack_pdf",
           "replay_pack_lapses", "verify_pack"]

PACK_KIND = "coverwatch.evidence-pack"
_J = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


def _json(v: Any) -> bytes:
    return orjson.dumps(v, option=_J) + b"\n"


def _in_force(versions: list[SiteVersion], since: int, until: int) -> list[SiteVersion]:
    first = max((i for i, v in enumerate(versions) if v.effective_us <= since), default=0)
    return [versions[first]] + [v for v in versions[first + 1:] if v.effective_us <= until]


def export_pack(
    store: Store, versions: list[SiteVersion], key: SigningKey, *, site: str,
    since: int, until: int, post: str | None = None, actor: str = "cli",
    heads: Path | None = None,
) -> bytes:
    """Build the pack (zip bytes) for [since, until]; see the module docstring.

    ``heads``: the site's tree head file (default: ``tree-heads.jsonl`` beside the key);
    the pack is proved against its last head, or a new one appended to it."""
    if until <= since:
        raise ValueError("--until must be after --since")
    if not versions:
        raise ValueError("no site version is stored")
    for _ in range(2):  # a head signed during the export: once more, from a new snapshot
        try:
            return _export(store, versions, key, site=site, since=since, until=until,
                           post=post, actor=actor, heads=heads)
        except HeadMoved:
            pass
    return _export(store, versions, key, site=site, since=since, until=until, post=post,
                   actor=actor, heads=heads)


def _export(
    store: Store, versions: list[SiteVersion], key: SigningKey, *, site: str,
    since: int, until: int, post: str | None, actor: str, heads: Path | None,
) -> bytes:
    with store.snapshot():  # every record read from one consistent snapshot
        run, _ = run_engine(store, versions, to=since, resume_before=since, save_until=None,
                            close=False)
        if run is None:
            from coverwatch.engine import CoverEngine

            first = _in_force(versions, since, until)[0]
            from coverwatch.formats.sitefile import load_site_text_document

            engine = CoverEngine(load_site_text_document(first.source, "<site>").site, since)
            state = engine_state(engine, [])
            in_force = _in_force(versions, since, until)
        else:
            state = engine_state(run.engine, list(run.registry.names))
            in_force = [versions[run.version]] + [
                v for v in versions[run.version + 1:] if v.effective_us <= until]
        rows = [{str(k): v for k, v in r.items()} for r in store.events_between(since, until + 1)]
        vers = [{"effective_us": v.effective_us, "source": v.source} for v in in_force]
        purged = purge_records(store, since)
        no_data = no_data_spans(vers, purged, since, until)
        lapses, stats = run_window(vers, state, rows, since, until, post, no_data)
        alerts = [a for a in store.load_alerts()
                  if a["alert_at"] <= until and (a.get("closed_at") or a.get("resolved_at")
                                                 or until) >= since
                  and (post is None or a["post"] == post)]
        # The whole roster and orders record, which the head signs; the pack's are its view.
        briefing = briefing_records(store)
        roster, orders = briefing_view(briefing, since, until, post)
        deliveries = load_delivery_rows(store, [a["id"] for a in alerts])
        audit_rows = audit_segment(store, since, until, alerts, rows)
        # The head is of this snapshot's log (its leaves cover every record read here), so
        # the segment can end at the chain's last entry as the head names it.
        heads = heads or heads_file(key.path)
        head, prev = pack_head(store, key, site, heads)
        audit_rows = reach_head(store, audit_rows, head)
        live = open_alerts(store.load_unclosed_alerts())  # what the head's open_alerts commits to
        daily = _daily_reports(store, versions, in_force[-1], max(since, int(rows[0]["t_us"])),
                               min(until, int(rows[-1]["t_us"]) + 1)) if rows else []
    anchor = make_anchor(store, key, site)
    linked = _linked_from(audit_rows, head, until)
    tree_head, proofs = pack_proofs(store, head, prev, [int(r["id"]) for r in rows],
                                    [int(e["id"]) for e in audit_rows
                                     if linked is None or int(e["id"]) < linked],
                                    pack_records(alerts, deliveries, vers), heads,
                                    [int(p["audit"]["id"]) for p in purged if p["audit"]])
    if linked is not None:
        proofs["linked"] = {"audit": linked}
    events_bytes = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)
    members: dict[str, bytes] = {
        "events.jsonl": events_bytes,
        "rule-versions.json": _json(vers),
        "engine-state.json": _json(state),
        "lapses.json": _json(lapses),
        "alerts.json": _json(alerts),
        "deliveries.json": _json(deliveries),
        "orders.json": _json(orders),
        "roster.json": _json(roster),
        "audit.jsonl": b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
                                for e in audit_rows),
        "audit-anchor.json": _json(anchor),
        "tree-head.json": _json(tree_head),
        "proofs.json": _json(proofs),
        "purges.json": _json({"records": purged, "no_data": no_data}),
        "daily-reports.json": _json(daily),
        "open-alerts.json": _json(live),
        "briefing.json": _json(briefing),
    }
    from coverwatch.evidence.pdf import PDF_RENDERER

    members["report.pdf"] = render_pack_pdf(members, site, since, until, post, stats)
    members[VERIFIER_NAME] = verifier_source().encode()  # the standalone verifier, one file
    made = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    manifest = sign_document({
        "kind": PACK_KIND, "v": 2, "site": site, "since": format_time(since),
        "until": format_time(until), "since_us": since, "until_us": until, "post": post,
        "made_at": made, "made_by": actor, "pdf_renderer": PDF_RENDERER,
        "members": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }, key)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", _json(manifest))
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _linked_from(entries: list[dict[str, Any]], head: dict[str, Any], until: int) -> int | None:
    """The first of the segment's last entries recorded after ``until`` (None: none): they
    need no inclusion proof of their own, as their links lead to the head's ``audit_last``,
    the segment's last entry (a pack over an old window would otherwise carry a proof for
    every entry since)."""
    last = head.get("audit_last")
    if not entries or not isinstance(last, dict) or last.get("id") != entries[-1]["id"]:
        return None
    first = None
    for e in reversed(entries):
        if parse_time(str(e["at"])) <= until:
            break
        first = int(e["id"])
    return first


def _daily_reports(store: Store, versions: list[SiteVersion], last: SiteVersion, since: int,
                   until: int) -> list[dict[str, Any]]:
    """The daily activity report of each local day from ``since`` to ``until`` (the window's
    first and last events), at most 31."""
    from coverwatch.formats.sitefile import load_site_text_document
    from coverwatch.reports.supervision import daily_report

    site = load_site_text_document(last.source, "<site>").site
    zone = ZoneInfo(site.timezone)
    day = _dt.datetime.fromtimestamp(since / 1e6, zone).date()
    end = _dt.datetime.fromtimestamp((until - 1) / 1e6, zone).date()
    out: list[dict[str, Any]] = []
    while day <= end and len(out) < 31:
        rep = daily_report(store, versions, site, day.isoformat())
        out.append({"day": day.isoformat(), "since": format_time(rep.since),
                    "until": format_time(rep.until), "timezone": rep.timezone,
                    "sections": rep.sections})
        day += _dt.timedelta(days=1)
    return out


def render_pack_pdf(files: dict[str, bytes], site: str, since: int, until: int,
                    post: str | None, stats: list[RuleStats]) -> bytes:
    """The report rendered from the pack's members alone (and the per-rule stats their
    re-run gives): export and verify call this, so the PDF can be re-rendered and compared."""
    from coverwatch.evidence.pdf import arrived_late, render_report

    def load(name: str) -> Any:
        return orjson.loads(files[name])

    audit = [orjson.loads(line) for line in files["audit.jsonl"].splitlines() if line]
    return render_report(
        site=site, since=since, until=until, post=post, lapses=load("lapses.json"),
        stats=stats, alerts=load("alerts.json"), deliveries=load("deliveries.json"),
        orders=load("orders.json"), roster=load("roster.json"), audit=audit,
        timezone=_timezone(load("rule-versions.json")[0]["source"]),
        events=files["events.jsonl"].count(b"\n"), purges=load("purges.json"),
        arrivals=arrived_late([orjson.loads(x) for x in files["events.jsonl"].splitlines()]))


def _timezone(source: str) -> str:
    from coverwatch.formats.sitefile import load_site_text_document

    return load_site_text_document(source, "<site>").site.timezone


@dataclass(slots=True)
class PackCheck:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, part: str, why: str) -> None:
        self.ok = False
        self.problems.append(f"{part}: {why}")


def verify_pack(data: bytes, trusted: tuple[str, ...] | None = None,
                witnessed: list[dict[str, Any]] | None = None, *,
                tsa_ca: bytes | None = None) -> PackCheck:
    """Check a pack on its own (``trusted``: public keys to accept; None: the one it names;
    ``witnessed``: tree heads kept elsewhere; ``tsa_ca``: the time-stamping authority's
    certificate(s), PEM): everything the standalone verifier checks
    (:mod:`coverwatch.evidence.standalone`), then the deliveries and the lapses re-run."""
    check = PackCheck()
    found = check_pack(data, trusted, witnessed, tsa_ca)
    check.notes += found.notes
    if not found.ok:
        check.ok, check.problems = False, list(found.problems)
        return check
    files = {n: zipfile.ZipFile(io.BytesIO(data)).read(n) for n in
             zipfile.ZipFile(io.BytesIO(data)).namelist()}
    manifest = orjson.loads(files["manifest.json"])
    if VERIFIER_NAME in files:  # a convenience: an examiner should run a copy of their own
        check.notes.append(f"{VERIFIER_NAME} is this release's standalone verifier"
                           if files[VERIFIER_NAME] == verifier_source().encode() else
                           f"{VERIFIER_NAME} differs from this release's standalone verifier "
                           "(another release's, or replaced): do not rely on it")
    if "deliveries.json" in files:  # packs made before deliveries were a member lack it
        _check_deliveries(files, check)
    try:
        lapses, rows, stats, spans = _rerun(files, manifest)
    except Exception as e:  # a pack that cannot be re-run is refused, whatever the reason
        check.fail("events.jsonl", f"cannot be re-run: {type(e).__name__}: {e}")
        return check
    if "purges.json" in files and spans != orjson.loads(files["purges.json"])["no_data"]:
        check.fail("purges.json", "the spans without data differ from what its purge "
                                  "records and the rules imply")
    if lapses != orjson.loads(files["lapses.json"]):
        check.fail("lapses.json", "the lapses differ from what the events imply")
        return check
    check.notes.append(f"{rows} events re-run: {len(lapses)} lapse(s) confirmed")
    _check_pdf(files, manifest, stats, check)
    return check


def _check_pdf(files: dict[str, bytes], manifest: dict[str, Any], stats: list[RuleStats],
               check: PackCheck) -> None:
    """Re-render the PDF and compare it byte for byte, when this release's renderer is the
    one that made it (``pdf_renderer``); else say it is not re-checked (the data checks
    stand on their own)."""
    from coverwatch.evidence.pdf import PDF_RENDERER

    if "purges.json" not in files:
        check.notes.append("report.pdf not re-rendered: the pack predates deterministic PDFs")
        return
    same = render_pack_pdf(files, manifest["site"], int(manifest["since_us"]),
                           int(manifest["until_us"]), manifest.get("post"), stats) \
        == files["report.pdf"]
    made_by = manifest.get("pdf_renderer")
    if same:
        check.notes.append("report.pdf re-rendered from the pack's data: identical")
    elif made_by == PDF_RENDERER:
        check.fail("report.pdf", "differs from the report the pack's data renders: it was "
                                 "replaced or edited")
    else:
        was = "an unversioned" if made_by is None else f"version {made_by} of the"
        check.notes.append(
            f"report.pdf rendered by {was} PDF renderer (this release renders version "
            f"{PDF_RENDERER}): not re-checked byte for byte; read the data members, which "
            "were checked, or verify with the release that made the pack")


def compare_lapses(
    derived: list[dict[str, Any]], reported: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The reported lapses the events do not imply, and the derived ones not reported."""
    key = orjson.dumps
    have = {key(lp, option=orjson.OPT_SORT_KEYS) for lp in derived}
    told = {key(lp, option=orjson.OPT_SORT_KEYS) for lp in reported}
    return ([lp for lp in reported if key(lp, option=orjson.OPT_SORT_KEYS) not in have],
            [lp for lp in derived if key(lp, option=orjson.OPT_SORT_KEYS) not in told])


def replay_pack_lapses(
    files: dict[str, bytes], manifest: dict[str, Any],
) -> tuple[list[dict[str, Any]], int]:
    """The lapses a pack's own events, rule versions and engine state imply, and how many
    events were re-run."""
    lapses, rows, _, _ = _rerun(files, manifest)
    return lapses, rows


def _rerun(files: dict[str, bytes], manifest: dict[str, Any],
           ) -> tuple[list[dict[str, Any]], int, list[RuleStats], list[dict[str, Any]]]:
    since, until = int(manifest["since_us"]), int(manifest["until_us"])
    rows = [orjson.loads(line) for line in files["events.jsonl"].splitlines() if line]
    versions = orjson.loads(files["rule-versions.json"])
    purged = orjson.loads(files["purges.json"]) if "purges.json" in files else {}
    spans = no_data_spans(versions, purged.get("records") or [], since, until)
    lapses, stats = run_window(versions, orjson.loads(files["engine-state.json"]), rows, since,
                               until, manifest.get("post"), spans)
    return lapses, len(rows), stats, spans


_DELIVERY_KEY = ("level", "purpose", "target", "person", "address", "at_us")


def _check_deliveries(files: dict[str, bytes], check: PackCheck) -> None:
    """Deliveries name alerts of the pack, and agree with the audit entries that recorded
    them: none hidden, none turned from failed into delivered."""
    try:
        rows = orjson.loads(files["deliveries.json"])
        ids = {a["id"] for a in orjson.loads(files["alerts.json"])}
        audit = [orjson.loads(line) for line in files["audit.jsonl"].splitlines() if line]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        check.fail("deliveries.json", f"cannot be read with alerts.json ({exc})")
        return
    # Attempts alike but for their outcome (a failure, then a success at the same
    # instant) are distinct: each audit entry takes one row of its outcome.
    shown: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        if r.get("alert_id") not in ids:
            check.fail("deliveries.json", f"names alert {r.get('alert_id')!r}, "
                                          "which is not in alerts.json")
            return
        shown.setdefault((r["alert_id"], *(r.get(k) for k in _DELIVERY_KEY)), []).append(
            r.get("outcome", ""))
    for e in audit:
        if not e["action"].startswith("notification.") or \
                not e["subject"].startswith("alert:") or e["subject"][6:] not in ids:
            continue
        key = (e["subject"][6:], *(e["details"].get(k) for k in _DELIVERY_KEY))
        outcome = e["action"].partition(".")[2]
        if not shown.get(key):
            check.fail("deliveries.json", f"audit entry {e['id']} records a delivery "
                                          "that is missing")
            return
        if outcome not in shown[key]:
            check.fail("deliveries.json", f"audit entry {e['id']} says {outcome}, "
                                          f"the pack says {' or '.join(shown[key])}")
            return
        shown[key].remove(outcome)
