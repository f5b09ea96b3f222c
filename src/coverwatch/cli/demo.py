"""`coverwatch demo`: the live server on the embedded store, driven by a simulator.

The simulator plays a dozen officers on the fictional Harbour Yard through the
real ingestion API (one device token per officer, HTTP batches), so everything
the control room sees went through the same validation, storage and engine as
real devices:

* static officers at the gates and in the store;
* two armed officers on a "roving patrol" that leaves the main gate without
  armed cover for minutes at a time (a lapse, then an alert after its grace);
* one device that falls silent, so its officer goes stale and stops counting.

Given a second site file (``make demo`` gives the fictional Quay Depot), four
more officers play there: one of the two armed officers at its main gate takes
breaks at the store, so the gate lapses; a supervisor of that site alone sees
nothing of the yard.

The sites' ``escalation:`` sections reach the demo's people: each demo account's
contact is the demo inbox (:mod:`coverwatch.cli.demoinbox`), a local receiver
whose messages are printed on the console and listed on a page.

Demo accounts with fixed passwords are created here and printed. This is the
only place coverwatch ever creates an account with a known password.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from coverwatch.cli.demoinbox import Inbox, Received, demo_inbox
from coverwatch.clock import wall_clock_us
from coverwatch.domain.time import format_time

__all__ = ["DEMO_USERS", "port_problem", "run_demo"]

DEMO_USERS = {
    "supervisor": ("demo-supervisor", ["supervisor"]),
    "U1": ("demo-officer-u1", ["officer"]),  # an officer logs in as their officer id
    "admin": ("demo-admin-pass", ["admin"]),
    "auditor": ("demo-auditor-pass", ["auditor"]),
}
# With a second site: a supervisor there only (per-site roles).
SITE_SUPERVISOR = ("quay-supervisor", "demo-quay-super")

# The patrol loop (site metres) the roving pair walks; it passes the main gate once.
LOOP = [(0, 0), (40, 30), (80, 80), (130, 110), (150, 60), (120, 20), (60, -10), (0, 0)]


@dataclass
class SimOfficer:
    name: str
    capabilities: tuple[str, ...]
    mode: str  # "static", "patrol", "silent"
    at: tuple[float, float] = (0.0, 0.0)
    offset_m: float = 0.0


OFFICERS = [
    SimOfficer("A1", ("armed",), "patrol", offset_m=0.0),
    SimOfficer("A2", ("armed",), "patrol", offset_m=3.0),
    SimOfficer("U1", (), "static", (2.0, 1.5)),
    SimOfficer("U2", (), "static", (-3.0, 2.0)),
    SimOfficer("S1", (), "static", (141.0, 58.0)),
    SimOfficer("S2", (), "static", (80.0, 100.0)),
    SimOfficer("S3", (), "static", (90.0, 110.0)),
    SimOfficer("P1", (), "static", (40.0, 40.0)),
    SimOfficer("P2", (), "static", (110.0, 30.0)),
    SimOfficer("P3", ("first-aid",), "static", (60.0, 60.0)),
    SimOfficer("A3", ("armed",), "static", (138.0, 62.0)),
    SimOfficer("D1", (), "silent", (95.0, 95.0)),
]

# The second site's officers (ids are unique across the deployment).
SECOND = [
    SimOfficer("Q1", ("armed",), "static", (1.0, 1.0)),
    SimOfficer("Q2", ("armed",), "breaks", (-1.0, 2.0)),
    SimOfficer("Q3", (), "static", (80.0, 105.0)),
    SimOfficer("Q4", (), "static", (0.0, -2.0)),
]


def loop_point(distance: float) -> tuple[float, float]:
    legs = list(itertools.pairwise(LOOP))
    total = sum(math.dist(a, b) for a, b in legs)
    d = distance % total
    for a, b in legs:
        length = math.dist(a, b)
        if d <= length:
            f = d / length
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        d -= length
    return LOOP[-1]


def _setup(data_dir: Path, sites: list[Path],
           inbox: Inbox | None = None) -> tuple[list[dict[str, str]], str]:
    """Fresh demo database: accounts (whose contacts are the demo inbox), one device per
    officer and an ingest token."""
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.storage import open_store
    from coverwatch.storage.sites import key_for_site, site_store

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    store = open_store(None, data_dir)
    try:
        for username, (password, roles) in DEMO_USERS.items():
            store.create_user(username, password, roles)
            if inbox is not None:
                store.set_contacts(username, [inbox.url(username)])
        tokens: list[dict[str, str]] = []
        for i, (path, officers) in enumerate(zip(sites, (OFFICERS, SECOND), strict=False)):
            site_id = load_site_document(path).site.id
            # The same store key the server will choose (coverwatch.bootstrap).
            at = site_store(store, key_for_site(store, site_id, sole=len(sites) == 1,
                                                first=i == 0))
            tokens.append({})
            for off in officers:
                _, token = at.create_device(f"phone-{off.name.lower()}", off.name)
                tokens[-1][off.name] = token
            if i == 1:
                name, password = SITE_SUPERVISOR
                store.create_user(name, password, [], site_roles_only=True)
                store.set_site_roles(name, at.site, ["supervisor"])
                if inbox is not None:
                    store.set_contacts(name, [inbox.url(name)])
        _, control = store.create_api_token("demo-control-room", ["ingest"])
    finally:
        store.close()
    return tokens, control


def _where(off: SimOfficer, elapsed: float, speed_mps: float) -> tuple[float, float]:
    if off.mode == "patrol":
        # Patrol for three minutes, then back at the gate for one.
        cycle = elapsed % 240
        x, y = loop_point(speed_mps * cycle + 40) if cycle < 180 else (1.0, -1.0)
        return x + off.offset_m, y
    if off.mode == "breaks":
        # Two minutes at the post, then a 90 s break at the store: the gate lapses.
        return off.at if elapsed % 210 < 120 else (70.0, 100.0)
    return off.at


async def simulate(base: str, tokens: dict[str, str], control: str, *, speed_mps: float = 1.5,
                   silent_after_s: float = 45.0, stop: asyncio.Event | None = None,
                   officers: list[SimOfficer] | None = None, site: str | None = None,
                   gates: tuple[str, ...] = ("main-gate", "service-gate"),
                   clock: Callable[[], int] = wall_clock_us,
                   transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Post 1 Hz fixes for every officer through the real API until ``stop``; each fix is
    stamped with the time it is sent."""
    stop = stop or asyncio.Event()
    officers = OFFICERS if officers is None else officers
    events = "/api/v1/events" if site is None else f"/api/v1/sites/{site}/events"
    t0 = clock()
    async with httpx.AsyncClient(base_url=base, timeout=10.0, transport=transport) as client:
        ctl = {"Authorization": f"Bearer {control}"}
        start = format_time(t0)
        await client.post(events, headers=ctl, json=[
            {"t": start, "kind": "flag", "flag": "open-hours", "on": True},
            *({"t": start, "kind": "gate", "post": g, "open": True} for g in gates),
        ])
        for off in officers:
            await client.post(
                "/api/v1/events", headers={"Authorization": f"Bearer {tokens[off.name]}"},
                json=[{"t": start, "kind": "duty", "on": True,
                       "capabilities": list(off.capabilities)}],
            )
        while not stop.is_set():
            for off in officers:
                # Stamped when sent, not when the round began: on a loaded machine a round
                # takes seconds, and an old stamp would arrive late and be judged late.
                now = clock()
                elapsed = (now - t0) / 1e6
                if off.mode == "silent" and elapsed > silent_after_s:
                    continue
                x, y = _where(off, elapsed, speed_mps)
                fix = {"t": format_time(now), "kind": "fix", "x": round(x, 2),
                       "y": round(y, 2), "accuracy_m": 4}
                with contextlib.suppress(httpx.HTTPError):
                    await client.post("/api/v1/events",
                                      headers={"Authorization": f"Bearer {tokens[off.name]}"},
                                      json=[fix])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def port_problem(host: str, port: int) -> str | None:
    """Why the demo cannot listen on ``host:port`` (it ended in a traceback), or None."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as e:
            return (f"cannot listen on {host}:{port}: {e.strerror} (another server there? "
                    "stop it, or give --port)")
    return None


async def run_demo(site: Path | list[Path], data_dir: Path, host: str, port: int) -> None:
    with demo_inbox(_show) as inbox:
        await _run_demo(site, data_dir, host, port, inbox)


def _show(message: Received) -> None:
    """A message the demo inbox received, on the console: the escalation reached a person."""
    print(f"  >> {message.at:%H:%M:%S} UTC to {message.to}: {message.title}", flush=True)


async def _run_demo(site: Path | list[Path], data_dir: Path, host: str, port: int,
                    inbox: Inbox) -> None:
    import uvicorn

    from coverwatch.bootstrap import create_app
    from coverwatch.formats.sitefile import load_site_document
    from coverwatch.settings import Settings

    sites = [site] if isinstance(site, Path) else list(site)[:2]
    tokens, control = await asyncio.to_thread(_setup, data_dir, sites, inbox)
    settings = Settings(site_path=sites[0], more_sites=tuple(sites[1:]), data_dir=data_dir,
                        demo=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port,
                                           log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.05)
    base = f"http://{host}:{port}"
    print(f"\ncoverwatch demo running at {base}/  (Ctrl-C to stop)")
    print("Demo logins (this demo only; never use these passwords elsewhere):")
    for username, (password, roles) in DEMO_USERS.items():
        print(f"  {username:<15} {password:<20} {', '.join(roles)}")
    second = load_site_document(sites[1]).site if len(sites) > 1 else None
    if second is not None:  # with the other logins, not under the simulation's lines
        name, password = SITE_SUPERVISOR
        print(f"  {name:<15} {password:<20} supervisor at {second.id} only")
    print("Simulating 12 officers on Harbour Yard (fictional): A1/A2 rove away from the")
    print("main gate (armed-cover lapses, alert after 60 s); D1's device falls silent.")
    runs = [simulate(base, tokens[0], control,
                     site=None if len(sites) == 1 else load_site_document(sites[0]).site.id)]
    if second is not None:
        print(f"And 4 officers on {second.name}: Q2 takes breaks away from its main gate.")
        print(f"With two sites, supervisors start on the all-sites board ({base}/sites).")
        runs.append(simulate(base, tokens[1], control, officers=SECOND, site=second.id,
                             gates=tuple(p.id for p in second.posts if p.gate)))
    print(f"Alerts escalate to the demo users' inbox: {inbox.page} (and below).")
    print(flush=True)  # the logins now, also when the output is a file or a pipe (| tee)
    try:
        await asyncio.gather(*runs)
    finally:
        server.should_exit = True
        await serving
