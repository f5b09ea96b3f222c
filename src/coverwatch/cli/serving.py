"""What `coverwatch serve` does before it listens: bring the database to this version's
schema (or refuse in one line naming the command) and say what it serves, where, and what
to do next (no users yet, no devices yet)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["StoreState", "device_token_note", "limit_malloc_arenas", "prepare_store",
           "print_serving", "tune_gc"]


@dataclass(frozen=True, slots=True)
class StoreState:
    users: int
    devices: int


def _shown(db: str | None, data_dir: Path) -> str:
    if db is None:
        from coverwatch.storage.store import DB_FILENAME

        return f"SQLite in {data_dir / DB_FILENAME}"
    from sqlalchemy.engine import make_url

    try:
        return make_url(db).render_as_string(hide_password=True)
    except Exception:  # an unreadable URL: say so without echoing it
        return "the database given by --db"


def prepare_store(db: str | None, data_dir: Path, *, distributed: bool) -> StoreState:
    """Upgrade a new or old database to this version's schema, or exit 2 with one line.

    In distributed mode (several nodes on one PostgreSQL) a node never migrates: they
    would race; it refuses and names `coverwatch db upgrade`, run once for all.
    """
    from coverwatch.errors import StoreError
    from coverwatch.storage import open_store

    err = Console(stderr=True)
    where = _shown(db, data_dir)
    option = "" if db is None else " --db URL"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(db, data_dir, migrate=not distributed)
    except StoreError as e:
        if "schema is at" in str(e):
            err.print(f"[red]error[/red] {escape(where)}: {escape(str(e).split(': run')[0])}: "
                      f"run `coverwatch db upgrade{option}` once, then start every node",
                      highlight=False, soft_wrap=True)
        else:
            err.print(f"[red]error[/red] {escape(where)}: {escape(str(e))}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as e:  # cannot connect, no such database, refused login...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        err.print(f"[red]error[/red] cannot open the database {escape(where)}: "
                  f"{escape(first)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        return StoreState(len(store.list_users()), len(store.list_devices()))
    finally:
        store.close()


def print_serving(sites: list[Path], db: str | None, data_dir: Path, url: str,
                  state: StoreState) -> None:
    """The lines a person starting the server needs: what, where, what next."""
    from coverwatch.formats.sitefile import load_site_document

    out = Console(highlight=False, soft_wrap=True)
    names = []
    for path in sites:
        try:
            site = load_site_document(path).site
            names.append(f"{site.id} ({site.name})")
        except Exception:  # the server reports a bad site file itself, with its line
            names.append(str(path))
    out.print(f"coverwatch serving {len(sites)} site(s): {escape(', '.join(names))}")
    out.print(f"  store: {escape(_shown(db, data_dir))}")
    board = f"  (all sites: {url}/sites)" if len(sites) > 1 else ""
    out.print(f"  control room: {url}/{board}")
    store = f" --db '{escape(_shown(db, data_dir))}'" if db else (
        "" if data_dir == Path("data") else f" --data-dir {escape(str(data_dir))}")
    if state.users == 0:
        # As the README's live section: the roles escalation names, and a contact.
        out.print("  no users yet: create one with\n"
                  f"    COVERWATCH_PASSWORD='choose-a-long-one' coverwatch users add alice "
                  f"--roles supervisor,admin{store}\n"
                  "  and give them a contact (any Apprise URL), so that alerts reach them:\n"
                  f"    coverwatch users set alice --notify 'ntfys://ntfy.sh/choose-a-topic'"
                  f"{store}")
    if state.devices == 0:
        out.print("  no devices yet: give each officer's phone one with\n"
                  f"    coverwatch devices add phone-a1 --officer A1{store}   (docs/server.md)")


def device_token_note(name: str, officer: str) -> str:
    """What `devices add` says beside the token it prints once."""
    return (f"device {name} reports for officer {officer}. Its token, shown only now, is its "
            "credential: put it in the phone app (the OsmAnd/Traccar device identifier, an "
            "OwnTracks password) or send it as `Authorization: Bearer TOKEN` to "
            "/api/v1/events. `coverwatch devices enrol` gives a QR code instead; "
            "`coverwatch devices rotate` replaces a lost token.")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before the server starts its worker threads.

    glibc gives threads their own arenas (up to 8 per core); the store's commits run in
    worker threads, so freed memory scattered over many arenas kept RSS climbing under
    steady load (bench/rss.py: +8 MB in the second half of a run by default, +0 with 2
    arenas). MALLOC_ARENA_MAX in the environment wins; other C libraries are left alone.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX


#: Allocations between two young-generation collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep the cycle collector off the hot path of a server that answers one request per fix.

    What is alive once the app is built (modules, the app, the site) is frozen out of every
    collection, and the youngest generation is collected every 10 000 allocations instead
    of 700: with Python's defaults the collector took about a tenth of a phone upload's CPU
    (bench/phones.py: 0.79x the CPU per request, issue 25). Garbage cycles are still found,
    a little later.
    """
    import gc

    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
