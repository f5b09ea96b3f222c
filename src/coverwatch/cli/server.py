"""Server-side commands: `serve`, `db upgrade`, `audit verify`, `users add`, `site apply`.

Passwords are read from a prompt or the ``COVERWATCH_PASSWORD`` environment
variable, never from arguments (which other users can see in the process list).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from coverwatch.cli.devices import devices_app
from coverwatch.cli.mqtt import mqtt_app
from coverwatch.cli.options import DataDirOption, DbOption
from coverwatch.errors import SiteFileError

__all__ = ["audit_app", "db_app", "devices_app", "mqtt_app", "register", "site_app",
           "users_app"]

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
users_app = typer.Typer(help="People who log in.", no_args_is_help=True)
site_app = typer.Typer(help="Site files: apply to a running server; GeoJSON in and out.",
                       no_args_is_help=True)



def serve(
    site: Annotated[list[Path], typer.Option(
        "--site", help="A site file (YAML); repeat for each site of the deployment.")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883")
    ] = None,
    owntracks: Annotated[list[str] | None, typer.Option(
        "--owntracks", help="OwnTracks over MQTT: USER/DEVICE=COVERWATCH-DEVICE reads topic "
                            "owntracks/USER/DEVICE as that device (repeatable; needs --mqtt).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    lateness_s: Annotated[float, typer.Option(help="Allowed lateness of events (s).")] = 2.0,
    max_future_s: Annotated[float, typer.Option(help="Refuse times this far ahead (s).")] = 30.0,
    recovery_s: Annotated[
        float, typer.Option(help="After a restart, hold the horizon this long (s).")
    ] = 10.0,
    heartbeat_url: Annotated[str | None, typer.Option(
        "--heartbeat-url", help="GET this URL every --heartbeat-s while the ticker and the "
        "store are healthy (a dead-man's-switch monitor). Or COVERWATCH_HEARTBEAT_URL.")] = None,
    heartbeat_s: Annotated[float, typer.Option(
        "--heartbeat-s", help="Seconds between heartbeats.")] = 60.0,
    max_body_bytes: Annotated[int, typer.Option(
        envvar="COVERWATCH_MAX_BODY_BYTES", min=1024,
        help="Largest request body from an authenticated caller (bytes); public routes "
             "accept at most 64 KiB.")] = 16 * 1024 * 1024,
    trusted_proxies: Annotated[str, typer.Option(
        envvar="COVERWATCH_TRUSTED_PROXIES",
        help="Reverse proxies whose X-Forwarded-For is believed: comma-separated addresses "
             "or networks (default none).")] = "",
    secure_cookies: Annotated[bool, typer.Option(
        "--secure-cookies", envvar="COVERWATCH_SECURE_COOKIES",
        help="Mark the session cookie Secure on every response (it already is on a request "
             "over https, or that a trusted proxy says came over https).")] = False,
    max_lateness_s: Annotated[
        float, typer.Option(help="Wait at most this long for devices' uploads (s).")
    ] = 10.0,
    public_url: Annotated[
        str | None, typer.Option(help="How phones reach this server (for enrolment QR codes).")
    ] = None,
    daily_report_at: Annotated[str | None, typer.Option(
        "--daily-report-at", help="Send the previous day's activity report at HH:MM (site "
        "time) every day to --daily-report-to.")] = None,
    daily_report_to: Annotated[list[str] | None, typer.Option(
        "--daily-report-to", help="Who gets the daily report: role:NAME, user:NAME or a "
        "notification URL (repeatable).")] = None,
    tsa_url: Annotated[str | None, typer.Option(
        "--tsa-url", envvar="COVERWATCH_TSA_URL", help="Time-stamp each signed tree head "
        "at this RFC 3161 authority.")] = None,
    witness: Annotated[list[str] | None, typer.Option(
        "--witness", help="Give each signed tree head to this witness: a file, an http(s) "
        "webhook or an Apprise URL (repeatable; or COVERWATCH_WITNESSES, space-separated)."
    )] = None,
    bus: Annotated[str | None, typer.Option(
        "--bus", envvar="COVERWATCH_BUS", help="Distributed mode: the NATS URL, e.g. "
        "nats://127.0.0.1:4222, or the servers of a NATS cluster comma-separated (needs "
        "PostgreSQL in --db; docs/scale.md).")] = None,
    role: Annotated[str, typer.Option(
        help="With --bus: gateway (ingest), worker (evaluate) or all.")] = "all",
    bus_prefix: Annotated[str, typer.Option(
        help="With --bus: the prefix of the stream's and buckets' names.")] = "coverwatch",
    bus_replicas: Annotated[int | None, typer.Option(
        "--bus-replicas", envvar="COVERWATCH_BUS_REPLICAS", min=1, max=5,
        help="With --bus: replicas of the stream and buckets (3 on a three-node NATS "
             "cluster); an existing stream is scaled to it. Default: left as it is (1 if "
             "new).")] = None,
    bus_partitions: Annotated[int | None, typer.Option(
        "--bus-partitions", envvar="COVERWATCH_BUS_PARTITIONS", min=1, max=4096,
        help="With --bus: leases per partition of the sites (a stable hash of the site id), "
             "this many partitions, the same on every node (docs/scale.md, \"Partitions\"). "
             "Default: a lease per site.")] = None,
) -> None:
    """Run the live server (FastAPI on uvicorn)."""
    import uvicorn

    from coverwatch.cli.serving import limit_malloc_arenas

    limit_malloc_arenas()

    from coverwatch.bootstrap import create_app
    from coverwatch.http.limits import parse_networks
    from coverwatch.server.owntracks import parse_owntracks_map
    from coverwatch.settings import Settings

    try:
        owntracks_map = parse_owntracks_map(owntracks or [])
    except ValueError as e:
        Console(stderr=True).print(f"[red]error[/red] --owntracks: {e}", highlight=False)
        raise typer.Exit(2) from None
    settings = Settings(
        site_path=site[0], more_sites=tuple(site[1:]), data_dir=data_dir, db_url=db,
        mqtt_url=mqtt, lateness_s=lateness_s,
        max_future_s=max_future_s, recovery_s=recovery_s, owntracks_mqtt=owntracks_map,
        heartbeat_url=heartbeat_url or os.environ.get("COVERWATCH_HEARTBEAT_URL") or None,
        heartbeat_s=heartbeat_s,
        max_body_bytes=max_body_bytes,
        trusted_proxies=tuple(p.strip() for p in trusted_proxies.split(",") if p.strip()),
        secure_cookies=secure_cookies, max_lateness_s=max_lateness_s, public_url=public_url,
        daily_report_at=daily_report_at, daily_report_to=tuple(daily_report_to or ()),
        bus_url=bus, role=role, bus_prefix=bus_prefix, bus_replicas=bus_replicas,
        bus_partitions=bus_partitions,
        tsa_url=tsa_url,
        witnesses=tuple(witness or os.environ.get("COVERWATCH_WITNESSES", "").split()),
    )
    from coverwatch.reports.schedule import check_schedule

    try:
        check_schedule(settings.daily_report_at, settings.daily_report_to)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--daily-report-at/--daily-report-to") \
            from None
    if bus and role not in ("gateway", "worker", "all"):
        raise typer.BadParameter("expected gateway, worker or all", param_hint="--role")
    if bus and not (db or "").startswith("postgresql"):  # every node shares the store
        raise typer.BadParameter("--bus needs a PostgreSQL --db", param_hint="--db")
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--trusted-proxies") from None
    from coverwatch.cli.serving import prepare_store, print_serving

    state = prepare_store(db, data_dir, distributed=bool(bus))
    print_serving(site, db, data_dir, (public_url or f"http://{host}:{port}").rstrip("/"), state)
    # uvicorn's own proxy handling would believe X-Forwarded-For from any local peer:
    # the app decides, from --trusted-proxies (coverwatch.http.limits).
    # httptools parses (h11 in pure Python cost more than the route); every request head
    # has a deadline and a size limit: a slow client is closed (http.slowclients).
    from coverwatch.cli.serving import tune_gc
    from coverwatch.http.slowclients import DeadlineHttpToolsProtocol

    app = create_app(settings)
    tune_gc()  # after the app is built: what lives for ever stays out of collections
    # SIGTERM stops the node within seconds: open streams (the live feed) get
    # SHUTDOWN_DRAIN_S, then the node hands its sites over (bounded too, bus/worker.py).
    uvicorn.run(app, host=host, port=port, log_level="info",
                access_log=False, proxy_headers=False, http=DeadlineHttpToolsProtocol,
                timeout_graceful_shutdown=SHUTDOWN_DRAIN_S)


SHUTDOWN_DRAIN_S = 1


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, data_dir: DataDirOption = Path("data")) -> None:
    """Apply the schema migrations (run before starting against PostgreSQL)."""
    from coverwatch.storage import upgrade
    revision = upgrade(db, data_dir)
    Console().print(f"database at revision {revision}")


def _password(confirm: bool = True) -> str:
    env = os.environ.get("COVERWATCH_PASSWORD")
    if env:
        return env
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


NotifyOption = Annotated[list[str] | None, typer.Option(
    "--notify", help="A contact: an Apprise URL (mailto://, ntfy://, tgram://, json://...) or "
    "signed+https://; repeat for several. Checked on entry; '-' reads one per line from stdin "
    "(keeps tokens out of the process list).")]


def _contacts(urls: list[str] | None) -> list[str]:
    """Read and check --notify values; exits 2 naming the bad one (redacted)."""

    from coverwatch.notify.contacts import InvalidContactError, check_contacts

    given: list[str] = []
    for u in urls or []:
        given += [line for line in sys.stdin.read().splitlines() if line.strip()] \
            if u == "-" else [u]
    try:
        return check_contacts(given)
    except InvalidContactError as e:
        Console(stderr=True).print(f"[red]error[/red] --notify: {e}", highlight=False)
        raise typer.Exit(2) from None


@users_app.command("add")
def users_add(
    username: str,
    roles: Annotated[str, typer.Option(help="Comma-separated: officer,supervisor,admin,auditor")],
    notify: NotifyOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Create a user (the password is prompted for, or read from COVERWATCH_PASSWORD).

    With `coverwatch --site ID users add …` the roles hold at that site only."""
    from coverwatch.errors import StoreError
    from coverwatch.notify.contacts import redact_contacts
    from coverwatch.storage import open_store, password_problem, record_user_change

    contacts = _contacts(notify)
    password = _password()
    problem = password_problem(username, password)
    if problem is not None:
        Console(stderr=True).print(f"[red]error[/red] {problem}", highlight=False)
        raise typer.Exit(2)
    store = open_store(db, data_dir)
    given = [r.strip() for r in roles.split(",") if r.strip()]
    site = os.environ.get("COVERWATCH_SITE")  # coverwatch --site ID: roles at that site only
    try:
        store.create_user(username, password, [] if site else given, site_roles_only=bool(site))
        if site:
            store.set_site_roles(username, store.site, given)
        if contacts:
            store.set_contacts(username, contacts)
        record_user_change(store, "cli", username, "created",
                           {"roles": roles, "contacts": redact_contacts(contacts)}
                           | ({"site": site} if site else {}))
    except (StoreError, ValueError) as e:
        Console(stderr=True).print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    Console().print(f"user {username} created")


@users_app.command("set")
def users_set(
    username: str,
    notify: NotifyOption = None,
    add_notify: Annotated[list[str] | None, typer.Option(
        "--add-notify", help="Add a contact to the user's list (repeatable).")] = None,
    clear_notify: Annotated[bool, typer.Option(
        "--clear-notify", help="Remove every contact.")] = False,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Change a user's contacts: --notify replaces the list, --add-notify adds to it."""
    from coverwatch.errors import StoreError
    from coverwatch.notify.contacts import redact_contacts
    from coverwatch.storage import open_store, record_user_change

    replace = _contacts(notify)
    added = _contacts(add_notify)
    if not (replace or added or clear_notify):
        Console(stderr=True).print("[red]error[/red] nothing to change: give --notify, "
                                   "--add-notify or --clear-notify")
        raise typer.Exit(2)
    store = open_store(db, data_dir)
    try:
        if replace or clear_notify:
            store.set_contacts(username, replace)
        for url in added:
            store.add_contact(username, url)
        now = store.contacts_of(username)
        record_user_change(store, "cli", username, "contacts",
                           {"contacts": redact_contacts(now)})
    except (StoreError, ValueError) as e:
        Console(stderr=True).print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    shown = ", ".join(redact_contacts(now)) or "none"
    Console().print(f"user {username}: contacts {shown}", highlight=False)


@users_app.command("grant")
def users_grant(
    username: str,
    roles: Annotated[str, typer.Option(
        help="Comma-separated roles at the chosen site; empty removes them there.")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Roles at one site (choose it with coverwatch --site ID): a supervisor of one site
    sees nothing of another. Deployment-wide roles are given by `users add`."""
    from coverwatch.errors import StoreError
    from coverwatch.storage import open_store, record_user_change

    if not os.environ.get("COVERWATCH_SITE"):
        Console(stderr=True).print("[red]error[/red] name the site: coverwatch --site ID "
                                   "users grant …", highlight=False)
        raise typer.Exit(2)
    store = open_store(db, data_dir)
    try:
        given = store.set_site_roles(username, store.site,
                                     [r.strip() for r in roles.split(",") if r.strip()])
        record_user_change(store, "cli", username, "site-roles",
                           {"site": os.environ["COVERWATCH_SITE"], "roles": sorted(given)})
    except (StoreError, ValueError) as e:
        Console(stderr=True).print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    shown = ",".join(sorted(given)) or "none"
    Console().print(f"user {username} at {os.environ['COVERWATCH_SITE']}: {shown}")


@users_app.command("list")
def users_list(db: DbOption = None, data_dir: DataDirOption = Path("data")) -> None:
    """Users, roles and contacts (redacted: contacts hold tokens and passwords)."""
    from coverwatch.notify.contacts import redact_contacts
    from coverwatch.storage import open_store

    store = open_store(db, data_dir)
    try:
        people = store.list_users()
        contacts = store.contacts_by_user()
    finally:
        store.close()
    for u in people:
        shown = ", ".join(redact_contacts(contacts.get(u.username, []))) or "no contact"
        state = "" if u.active else " (inactive)"
        print(f"{u.username}{state}\t{','.join(sorted(u.roles))}\t{shown}")


def demo(
    site: Annotated[list[Path] | None, typer.Option(
        help="A site file; give two for a two-site deployment (the second gets its own "
             "officers and a supervisor of that site only).")] = None,
    data_dir: Annotated[Path, typer.Option(help="Demo data (recreated).")] = Path("data/demo"),
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Run the server on a fresh embedded store, with a simulator driving a dozen officers."""
    import asyncio

    from coverwatch.cli.demo import port_problem, run_demo

    problem = port_problem(host, port)
    if problem is not None:
        Console(stderr=True).print(f"[red]error[/red] {problem}", highlight=False)
        raise typer.Exit(2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(site or [Path("examples/yard/site.yaml")], data_dir, host, port))


@site_app.command("apply")
def site_apply(
    site: Annotated[Path, typer.Argument(help="The new site file (YAML).")],
    server: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000",
    user: Annotated[str, typer.Option(help="Your username (admin, or approver to weaken).")] = "",
    reason: Annotated[str, typer.Option(help="Why (required when cover is weakened).")] = "",
) -> None:
    """Apply a new site file to a running server: classified, authorised, audited.

    The password comes from COVERWATCH_PASSWORD or a prompt. Exit 0 when applied
    (or unchanged), 2 when the file is invalid, 3 when refused.
    """
    import httpx

    from coverwatch.formats.sitefile import load_site_text_document

    console = Console()
    err = Console(stderr=True)
    text = site.read_text(encoding="utf-8")
    try:
        load_site_text_document(text, str(site))
    except SiteFileError as e:
        for problem in e.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not user:
        user = str(typer.prompt("Username"))
    password = _password(confirm=False)
    with httpx.Client(base_url=server, timeout=30.0) as client:
        login = client.post("/api/v1/login", json={"username": user, "password": password})
        if login.status_code != 200:
            detail = login.json().get("detail")
            err.print(f"[red]login refused[/red] ({login.status_code}): {detail}")
            raise typer.Exit(3)
        csrf = login.json()["csrf_token"]
        r = client.post("/api/v1/site/apply", json={"site": text, "reason": reason},
                        headers={"X-CSRF-Token": csrf})
    body = r.json()
    if r.status_code != 200:
        err.print(f"[red]refused[/red] ({r.status_code}): {body.get('detail')}", highlight=False)
        raise typer.Exit(2 if r.status_code == 422 else 3)
    if not body["changed"]:
        console.print("no change: the server already runs this site file")
        return
    console.print(f"applied ({body['class']}, approved as {body['approval']}); in force from "
                  f"{body['effective_at']}")
    for change in body["diff"].get("changes", []):
        console.print(f"  - [{change['kind']}] {change['description']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Mount the server commands on the main CLI."""
    app.command()(serve)
    app.command()(demo)
    app.add_typer(db_app, name="db")
    app.add_typer(audit_app, name="audit")
    app.add_typer(users_app, name="users")
    app.add_typer(devices_app, name="devices")
    app.add_typer(site_app, name="site")
    app.add_typer(mqtt_app, name="mqtt")
