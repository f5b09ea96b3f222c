"""Evidence commands: `audit verify|anchor|keys`, `evidence export|verify`, `retention`.

Keys are read from ``COVERWATCH_AUDIT_KEY_FILE`` (default ``<data dir>/keys/audit.key``)
and the Ed25519 signing key beside it; no secret is ever printed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from coverwatch.cli.options import DataDirOption, DbOption, nothing_stored
from coverwatch.cli.server import audit_app

__all__ = ["evidence_app", "register_evidence", "retention_app"]

evidence_app = typer.Typer(help="Evidence packs an investigator can check alone.",
                           no_args_is_help=True)


def _site_id(store: object) -> str:
    from coverwatch.storage import Store
    from coverwatch.storage.sites import DEPLOYMENT
    from coverwatch.storage.versions import load_versions

    assert isinstance(store, Store)
    if store.site == DEPLOYMENT:
        return DEPLOYMENT
    versions = load_versions(store)
    if not versions:
        return store.get_state("site.id") or "site"
    from coverwatch.formats.sitefile import load_site_text_document

    return load_site_text_document(versions[-1].source, "<stored>").site.id


@audit_app.command("verify")
def audit_verify(
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
    anchors: Annotated[Path | None, typer.Option(
        help="Anchor file to check the chain against; default: anchors.jsonl beside the key, "
             "if there is one.")] = None,
    public_key: Annotated[Path | None, typer.Option(
        help="Trust only this public key (base64 or PEM file); default: the local signing key.")]
    = None,
    unsealed_before: Annotated[int, typer.Option(
        help="Entries before this id predate the MAC key (an upgraded deployment).")] = 0,
    heads: Annotated[Path | None, typer.Option(
        help="Signed tree heads of the transparency log; default: tree-heads.jsonl beside "
             "the anchors, if there is one.")] = None,
    tsa_ca: Annotated[Path | None, typer.Option(
        help="Check the heads' RFC 3161 time-stamps against this authority's CA (PEM).")]
    = None,
) -> None:
    """Check the audit chain, each entry's MAC and the anchors. Exit 0 if intact, 1 naming
    what was found (truncated, wiped, rewritten, forged, edited, deleted, bad-anchor,
    site-changed), 2 if there is no anchor to check against (never called sound then).

    The site is the one `coverwatch --site ID` names, else the one the anchors name; the
    site id stored in the database is only compared, never trusted to pick anchors."""
    import os

    from coverwatch.evidence.anchors import verify_anchored
    from coverwatch.evidence.keys import EvidenceKeyError, load_signing_key
    from coverwatch.storage import open_store
    from coverwatch.storage.auditkeys import default_key_path, load_keyring

    console = Console()
    key_path = default_key_path(data_dir)
    keyring = load_keyring(key_path, create=False)
    if keyring is None:
        console.print(f"[yellow]warning[/yellow] no audit key at {escape(str(key_path))}: "
                      "MACs not checked (set COVERWATCH_AUDIT_KEY_FILE)", highlight=False)
    if anchors is None and key_path.with_name("anchors.jsonl").exists():
        anchors = key_path.with_name("anchors.jsonl")
        console.print(f"anchors: {escape(str(anchors))}", highlight=False)
    trusted: tuple[str, ...] | None = None
    if public_key is not None:
        trusted = (_read_public(public_key),)
    else:
        with contextlib.suppress(EvidenceKeyError):  # no key of the site: any key
            trusted = load_signing_key(key_path, create=False).trusted
    store = open_store(db, data_dir, audit_key=False)
    try:
        # One anchor file may hold several sites' anchors: the site to check comes from the
        # caller or the anchors, never from the database (an insider could change it there).
        result = verify_anchored(store, anchors, keyring=keyring, trusted=trusted,
                                 unsealed_before=unsealed_before,
                                 site=os.environ.get("COVERWATCH_SITE") or None,
                                 stored_site=_site_id(store))
        if heads is None and anchors is not None and \
                anchors.with_name("tree-heads.jsonl").exists():
            heads = anchors.with_name("tree-heads.jsonl")
        if heads is not None and result.site is not None:
            from coverwatch.evidence.treeheads import verify_tree_heads

            checked = verify_tree_heads(store, heads, trusted=trusted, site=result.site)
            result.findings.extend(checked.findings)
            console.print(f"tree heads: {escape(str(heads))}: {checked.heads} head(s), "
                          f"{checked.leaves} leaves", highlight=False)
            if tsa_ca is not None:
                from coverwatch.evidence.timestamps import check_timestamps

                stamped, bad = check_timestamps(heads, checked.checked, tsa_ca)
                result.findings.extend(bad)
                console.print(f"time-stamped: {stamped} of {checked.heads} head(s)",
                              highlight=False)
            for other, count in sorted(checked.other_sites.items()):
                console.print(f"not checked: {count} tree head(s) of site {escape(other)}",
                              highlight=False)
            if checked.heads == 0 and result.refusal is None:
                result.refusal = f"no tree heads of site {result.site!r} in {heads}"
        elif result.refusal is None:  # the log was never checked against a signed head
            result.refusal = ("no tree head file (tree-heads.jsonl beside the anchors, or "
                              "--heads): the transparency log is not checked")
    finally:
        store.close()
    last = result.last_anchor
    anchored = "" if last is None else f", last anchor {last['at']} at entry {last['head_id']}"
    for other, count in sorted(result.other_sites.items()):
        console.print(f"not checked: {count} anchor(s) of site {escape(other)}", highlight=False)
    if result.sound:
        console.print(f"[green]ok[/green] audit log of site {escape(str(result.site))} intact: "
                      f"{result.entries} entries{', MACs verified' if keyring else ''}, "
                      f"{result.anchors} anchor(s){anchored}", highlight=False)
        return
    for f in result.findings:
        console.print(f"[red]TAMPERED[/red] {f.kind}: {escape(f.message)}", highlight=False,
                      soft_wrap=True)
    if result.findings:
        raise typer.Exit(1)
    console.print(f"[red]NOT VERIFIED[/red] {escape(str(result.refusal))}", highlight=False,
                  soft_wrap=True)
    raise typer.Exit(2)


def _read_public(path: Path) -> str:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = path.read_text(encoding="ascii").strip()
    if "BEGIN PUBLIC KEY" in text:
        key = serialization.load_pem_public_key(text.encode())
        assert isinstance(key, Ed25519PublicKey)
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    return text.splitlines()[-1].strip()


def _refused(e: Exception) -> typer.Exit:
    Console(stderr=True).print(f"[red]error[/red] {escape(str(e))}", highlight=False,
                               soft_wrap=True)
    return typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    out: Annotated[Path, typer.Option("--out", help="Anchor file (appended to).")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Append a signed anchor of the chain's current head to FILE."""
    from coverwatch.evidence.anchors import append_anchor, make_anchor
    from coverwatch.evidence.keys import load_signing_key
    from coverwatch.evidence.treeheads import UnsealedAudit, head_now, refuse_unsealed
    from coverwatch.storage import open_store
    from coverwatch.storage.auditkeys import default_key_path

    key = load_signing_key(default_key_path(data_dir))
    store = open_store(db, data_dir)
    try:
        refuse_unsealed(store, out.with_name("tree-heads.jsonl"), _site_id(store))
        anchor = make_anchor(store, key, _site_id(store))
        append_anchor(out, anchor)
        # And a signed head of the transparency log beside it.
        head_now(store, key, anchor["site"], out.with_name("tree-heads.jsonl"))
    except UnsealedAudit as e:
        raise _refused(e) from None
    finally:
        store.close()
    Console().print(f"anchored entry {anchor['head_id']} ({anchor['key_id']}) to {out}",
                    highlight=False)


@audit_app.command("head")
def audit_head_cmd(
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
    out: Annotated[Path | None, typer.Option(
        "--out", help="Tree head file (appended to); default: tree-heads.jsonl beside the "
                      "key.")] = None,
    tsa_url: Annotated[str | None, typer.Option(
        envvar="COVERWATCH_TSA_URL",
        help="Have the head time-stamped by this RFC 3161 authority (reply kept beside it).")]
    = None,
    witness: Annotated[list[str] | None, typer.Option(
        help="Also give the head to this witness: a file path, an http(s) webhook or an "
             "Apprise URL such as mailto://… (repeatable).")] = None,
) -> None:
    """Sign the transparency log's head now (size, root, previous head), append it and
    give it to its witnesses. Exit 1 naming each witness that did not take it."""
    from coverwatch.evidence.keys import load_signing_key
    from coverwatch.evidence.treeheads import UnsealedAudit, head_now, heads_file
    from coverwatch.storage import open_store
    from coverwatch.storage.auditkeys import default_key_path

    key_path = default_key_path(data_dir)
    key = load_signing_key(key_path)
    path = out or heads_file(key_path)
    store = open_store(db, data_dir)
    try:
        head = head_now(store, key, _site_id(store), path)
    except UnsealedAudit as e:
        raise _refused(e) from None
    finally:
        store.close()
    from coverwatch.evidence.witness import Witnesses

    failed = Witnesses(witness or (), tsa_url, path).witness(head)
    for why in failed:  # the head is kept; only a witness failed to take it
        Console(stderr=True).print(
            f"[red]error[/red] {escape(why)}; the tree head is written to {path}",
            highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
    Console().print(f"tree head of {head['site']}: {head['size']} leaves, root "
                    f"{head['root'][:16]}… ({head['key_id']}) to {path}", highlight=False)


@audit_app.command("keys")
def audit_keys(
    data_dir: DataDirOption = Path("data"),
    rotate_mac: Annotated[bool, typer.Option(help="Start a new MAC key (old ones kept).")]
    = False,
    rotate_signing: Annotated[bool, typer.Option(help="Start a new signing key.")] = False,
) -> None:
    """Print the public signing key (PEM) for investigators, and the key ids in use."""
    from coverwatch.evidence.keys import key_fingerprint, load_signing_key, rotate_signing_key
    from coverwatch.storage.auditkeys import default_key_path, load_keyring, rotate_keyring

    path = default_key_path(data_dir)
    keyring = rotate_keyring(path) if rotate_mac else load_keyring(path)
    key = rotate_signing_key(path) if rotate_signing else load_signing_key(path)
    err = Console(stderr=True)
    assert keyring is not None
    err.print(f"MAC key file {path}: in use {keyring.current_id}, "
              f"{len(keyring.keys) - 1} retired", highlight=False)
    err.print(f"signing key {key.path}: {key_fingerprint(key.public_b64)}; "
              f"{len(key.retired)} retired public key(s)", highlight=False)
    print(key.public_pem(), end="")




@evidence_app.command("export")
def evidence_export(
    since: Annotated[str, typer.Option(help="Start of the window (ISO-8601).")],
    until: Annotated[str, typer.Option(help="End of the window (ISO-8601).")],
    out: Annotated[Path, typer.Option("--out", help="The pack to write (.zip).")],
    post: Annotated[str | None, typer.Option(help="Only this post's lapses and alerts.")]
    = None,
    heads: Annotated[Path | None, typer.Option(
        help="The site's tree head file the pack is proved against (its last head, or one "
             "signed now and appended); default: tree-heads.jsonl beside the key.")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Write an evidence pack for a window: PDF report, raw events, rule versions, engine
    state at --since, audit segment with a signed anchor, and a signed SHA-256 manifest."""
    from coverwatch.domain.time import parse_time
    from coverwatch.evidence.keys import load_signing_key
    from coverwatch.evidence.pack import export_pack
    from coverwatch.storage import open_store
    from coverwatch.storage.auditkeys import default_key_path
    from coverwatch.storage.versions import load_versions

    err = Console(stderr=True)
    try:
        since_us, until_us = parse_time(since), parse_time(until)
    except ValueError as e:
        err.print(f"[red]error[/red] --since/--until: {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    key = load_signing_key(default_key_path(data_dir))
    store = open_store(db, data_dir)
    try:
        versions = load_versions(store)
        if not versions:
            err.print(f"[red]error[/red] {escape(nothing_stored(db, data_dir))}",
                      highlight=False)
            raise typer.Exit(2)
        data = export_pack(store, versions, key, site=_site_id(store), since=since_us,
                           until=until_us, post=post, actor="cli", heads=heads)
        store.audit_change("cli", "evidence.exported", f"site:{_site_id(store)}",
                           {"since": since, "until": until, "post": post, "file": out.name})
    except ValueError as e:
        err.print(f"[red]error[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    out.write_bytes(data)
    Console().print(f"wrote {out} ({len(data)} bytes)", highlight=False)


@evidence_app.command("verify")
def evidence_verify(
    pack: Annotated[Path, typer.Argument(help="The evidence pack (.zip).")],
    public_key: Annotated[Path | None, typer.Option(
        help="Trust only this public key (from `coverwatch audit keys`).")] = None,
    tsa_ca: Annotated[Path | None, typer.Option(
        help="The time-stamping authority's certificate (PEM): the pack's head must carry "
             "an RFC 3161 time-stamp that verifies under it.")] = None,
) -> None:
    """Check a pack: digests, signature, audit links, and the lapses re-run from its events.
    Exit 0 if it holds, 1 naming each part that does not."""
    from coverwatch.evidence.pack import verify_pack

    trusted = None if public_key is None else (_read_public(public_key),)
    try:
        data = pack.read_bytes()
        ca = None if tsa_ca is None else tsa_ca.read_bytes()
    except OSError as e:
        Console(stderr=True).print(f"[red]error[/red] {e.filename or pack}: {e.strerror or e}",
                                   highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    check = verify_pack(data, trusted, tsa_ca=ca)
    console = Console()
    if check.ok:
        for note in check.notes:
            console.print(f"[green]ok[/green] {escape(note)}", highlight=False)
        console.print(f"[green]ok[/green] {pack}: every part verified", highlight=False)
        if public_key is None:
            console.print("note: signed by the key the pack names; pass --public-key to "
                          "check it is the site's", highlight=False)
        return
    for p in check.problems:
        console.print(f"[red]FAILED[/red] {escape(p)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def replay_pack(pack: Path, json_out: str | None) -> None:
    """``coverwatch replay --pack``: the lapses the pack's own events, rule versions and
    engine state imply, compared with its ``lapses.json``. Exit 0 if they agree, 1 naming
    each lapse only one side has, 2 if the pack cannot be read or re-run."""
    import io
    import sys
    import zipfile

    import orjson

    from coverwatch.evidence.pack import compare_lapses, replay_pack_lapses

    err = Console(stderr=True)
    try:
        z = zipfile.ZipFile(io.BytesIO(pack.read_bytes()))
        files = {n: z.read(n) for n in z.namelist()}
        manifest = orjson.loads(files["manifest.json"])
        recorded = orjson.loads(files["lapses.json"])
        if not isinstance(recorded, list) or not all(isinstance(x, dict) for x in recorded):
            raise KeyError("lapses.json is not a list of lapses")
    except (OSError, zipfile.BadZipFile, orjson.JSONDecodeError, KeyError) as e:
        err.print(f"[red]error[/red] {escape(str(pack))}: not a readable evidence pack "
                  f"({escape(str(e))})", highlight=False)
        raise typer.Exit(2) from None
    try:
        lapses, count = replay_pack_lapses(files, manifest)
    except Exception as e:  # whatever a malformed pack makes the engine raise: named, no trace
        err.print(f"[red]error[/red] {escape(str(pack))}: cannot be re-run: "
                  f"{type(e).__name__}: {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    to_stdout = json_out == "-"
    console = Console(stderr=to_stdout)
    if json_out is not None:
        body = b"".join(orjson.dumps(lp) + b"\n" for lp in lapses)
        if to_stdout:
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        else:
            Path(json_out).write_bytes(body)
    console.print(f"{pack}: {count} events from {manifest.get('since')} to "
                  f"{manifest.get('until')} re-run: {len(lapses)} lapse(s)", highlight=False)
    for lp in lapses:
        alerted = "no alert" if lp["alert_at"] is None else f"alerted {lp['alert_at']}"
        console.print(f"  {lp['post']}/{lp['rule']}: {lp['start']} to {lp['end']}, lowest "
                      f"cover {lp['min_cover']}, {alerted}", highlight=False)
    only_pack, only_events = compare_lapses(lapses, recorded)
    if not only_pack and not only_events:
        console.print("[green]ok[/green] the pack's lapses.json agrees", highlight=False)
        return
    for lp in only_pack:
        console.print(f"[red]DIFFERS[/red] the pack reports {lp.get('post')}/{lp.get('rule')} "
                      f"from {lp.get('start')} to {lp.get('end')}, which its events do not "
                      "imply", highlight=False)
    for lp in only_events:
        console.print(f"[red]DIFFERS[/red] the events imply {lp['post']}/{lp['rule']} from "
                      f"{lp['start']} to {lp['end']}, which the pack does not report",
                      highlight=False)
    raise typer.Exit(1)


retention_app = typer.Typer(help="How long raw positions are kept; legal holds.",
                            no_args_is_help=True)


@retention_app.command("set")
def retention_set(
    days: Annotated[float | None, typer.Argument(help="Days to keep raw positions; omit to "
                                                      "keep them forever.")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Set the site's retention of raw positions (audited)."""
    from coverwatch.errors import StoreError
    from coverwatch.evidence.retention import set_retention_days
    from coverwatch.storage import open_store

    store = open_store(db, data_dir)
    try:
        set_retention_days(store, days, "cli", _site_id(store))
    except StoreError as e:
        Console(stderr=True).print(f"[red]error[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    Console().print("positions kept forever" if days is None else
                    f"positions kept {days:g} days", highlight=False)


@retention_app.command("purge")
def retention_purge(db: DbOption = None, data_dir: DataDirOption = Path("data")) -> None:
    """Purge raw positions past the retention now (the server does it daily); audited."""
    from coverwatch.evidence.retention import purge_now
    from coverwatch.storage import open_store

    store = open_store(db, data_dir)
    try:
        removed = purge_now(store, "cli")
    finally:
        store.close()
    Console().print("no retention set: nothing purged" if removed is None else
                    f"purged {removed} positions", highlight=False)


@retention_app.command("hold")
def retention_hold(
    since: Annotated[str, typer.Option(help="Start (ISO-8601).")],
    until: Annotated[str, typer.Option(help="End (ISO-8601).")],
    reason: Annotated[str, typer.Option(help="Why (e.g. the inquiry's reference).")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Place a legal hold: positions in [since, until) are never purged while it stands."""
    from coverwatch.domain.time import parse_time
    from coverwatch.errors import StoreError
    from coverwatch.storage import open_store

    store = open_store(db, data_dir)
    try:
        hold = store.add_hold(parse_time(since), parse_time(until), reason, "cli")
    except (StoreError, ValueError) as e:
        Console(stderr=True).print(f"[red]error[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    Console().print(f"legal hold {hold.id} placed", highlight=False)


@retention_app.command("release")
def retention_release(
    hold_id: int, db: DbOption = None, data_dir: DataDirOption = Path("data"),
) -> None:
    """Release a legal hold (audited)."""
    from coverwatch.errors import StoreError
    from coverwatch.storage import open_store

    store = open_store(db, data_dir)
    try:
        store.release_hold(hold_id, "cli")
    except StoreError as e:
        Console(stderr=True).print(f"[red]error[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    Console().print(f"legal hold {hold_id} released", highlight=False)


def register_evidence(app: typer.Typer) -> None:
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(retention_app, name="retention")
    from coverwatch.cli.supervision import records_app

    app.add_typer(records_app, name="records")
