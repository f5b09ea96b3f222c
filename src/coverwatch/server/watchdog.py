"""The watched watcher: the server checks itself and says when it cannot supervise.

Every ``watch_s`` the watchdog looks at three things:

* the ticker: has a tick completed recently (``ticker_stall_s``)?
* the engine: does the horizon trail the clock by more than the allowed lateness
  plus ``max_engine_lag_s`` (not while the horizon is held after a restart)?
* the store: did the last commit fail, and can a small write commit now?
* ingestion: were several messages refused by the store or set aside as dead
  letters lately (``INGEST_FAILURES`` within ``INGEST_WINDOW_S``)?

Each problem raises a ``system`` alert (rule ``ticker-stopped``, ``engine-lag``,
``store-commit`` or ``ingest-failing``) sent to supervisors and admins, and makes ``/readyz`` answer
503, until it clears (the alert is then resolved). A notifier that reaches
nobody never flips ``/readyz``: mail being down must not take ingestion away;
that is a ``notification-failure`` or ``system`` alert only.

With ``heartbeat_url`` the server GETs that URL every ``heartbeat_s`` seconds,
but only while the ticker and the store are healthy, so an external
dead-man's-switch monitor notices when the server is stuck, not only when it is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from coverwatch.domain.supervision import open_direct
from coverwatch.domain.time import US_PER_S
from coverwatch.server.pools import in_store

if TYPE_CHECKING:
    from coverwatch.server.unit import SiteUnit

__all__ = ["Health", "check", "run_heartbeat", "should_beat", "watch_once"]

log = logging.getLogger("coverwatch.server")

_PROBE_KEY = "watchdog.probe"
# Ingestion "keeps failing": this many messages or requests not stored within the window.
INGEST_FAILURES = 3
INGEST_WINDOW_S = 600.0


@dataclass
class Health:
    """What the server knows about itself; ``problems`` flip /readyz."""

    last_tick: float = field(default_factory=time.monotonic)
    ticks: int = 0
    store_ok: bool = True
    store_error: str = ""
    problems: dict[str, str] = field(default_factory=dict)
    # When records were refused by the store or set aside as dead letters (monotonic s).
    ingest_failures: list[float] = field(default_factory=list)
    ingest_error: str = ""

    def ticked(self) -> None:
        self.last_tick = time.monotonic()
        self.ticks += 1

    def committed(self, ok: bool, error: str = "") -> None:
        self.store_ok = ok
        self.store_error = "" if ok else error

    def ingest_failed(self, error: str) -> None:
        """A sender's records could not be stored (the store itself may be fine)."""
        now = time.monotonic()
        self.ingest_failures = [t for t in self.ingest_failures if now - t <= INGEST_WINDOW_S]
        self.ingest_failures.append(now)
        self.ingest_error = error

    def failing_ingest(self) -> int:
        """How many ingest failures in the last :data:`INGEST_WINDOW_S` seconds."""
        now = time.monotonic()
        return sum(1 for t in self.ingest_failures if now - t <= INGEST_WINDOW_S)

    def commits(self, stored: bool, errors: list[Exception]) -> None:
        """A group commit's outcome: some request stored, and each failed one's error."""
        from coverwatch.server.admission import record_fault

        if stored:
            self.committed(True)
        for e in errors:
            text = f"{type(e).__name__}: {str(e)[:200]}"
            self.ingest_failed(text)
            if not record_fault(e):
                self.committed(False, text)

    @property
    def ready(self) -> bool:
        return not self.problems

    def ticker_fresh(self, stall_s: float) -> bool:
        return time.monotonic() - self.last_tick <= stall_s


def stall_limit_s(svc: SiteUnit) -> float:
    """How long without a completed tick is a stopped ticker (a few ticks at least)."""
    return max(svc.settings.ticker_stall_s, 3 * svc.settings.tick_s)


def check(svc: SiteUnit) -> dict[str, str]:
    """The server's problems now: rule name -> what is wrong."""
    settings = svc.settings
    health: Health = svc.health
    out: dict[str, str] = {}
    stalled = time.monotonic() - health.last_tick
    if stalled > stall_limit_s(svc):
        out["ticker-stopped"] = (f"The live engine's ticker has not completed a tick for "
                                 f"{stalled:.0f} s: lapses are not being detected.")
    if svc.clock() >= svc.recover_until:
        lag = svc.engine_lag_s() - settings.lateness_s
        if lag > settings.max_engine_lag_s:
            out["engine-lag"] = (f"The live engine is {lag:.0f} s behind (beyond the allowed "
                                 f"lateness): alerts come late.")
    failures = health.failing_ingest()
    if failures >= INGEST_FAILURES:
        out["ingest-failing"] = (f"{failures} device or system messages could not be stored in "
                                 f"the last {INGEST_WINDOW_S / 60:.0f} minutes (last: "
                                 f"{health.ingest_error}); see the dead letters.")
    if not health.store_ok:
        out["store-commit"] = f"The store cannot commit: {health.store_error or 'unknown error'}."
    return out


# Every site of a process shares one database (one SQLite file, or one PostgreSQL), so one
# probe per round answers for all of them (a probe per site made idle cost grow with the
# sites: a hundred sites in one process made twenty commits a second for it).
# By (engine, event loop): when it started, and the probe itself.
_SHARED: dict[tuple[int, int], tuple[float, asyncio.Future[None]]] = {}


def _commit_probe(svc: SiteUnit) -> asyncio.Future[None]:
    # In the store writes' own pool: a probe queued behind the default pool's reads (a
    # thousand sites' first anchoring at a start) timed out with PostgreSQL healthy, and
    # every site raised "store-commit" at once.
    return asyncio.ensure_future(asyncio.wait_for(in_store(
        svc.store.set_state, _PROBE_KEY, str(svc.clock() // US_PER_S)), 10))


async def _probe_store(svc: SiteUnit) -> None:
    engine = getattr(svc.store, "engine", None)
    try:
        if engine is None:
            await _commit_probe(svc)
        else:
            key = (id(engine), id(asyncio.get_running_loop()))
            at, probe = _SHARED.get(key, (-1e18, None))
            # A failed probe answers for no later round: the next site's tries again.
            failed = probe is not None and probe.done() and (
                probe.cancelled() or probe.exception() is not None)
            if probe is None or failed or time.monotonic() - at >= svc.settings.watch_s / 2:
                probe = _commit_probe(svc)
                _SHARED[key] = (time.monotonic(), probe)
            await asyncio.shield(probe)
    except Exception as exc:  # any failure to commit is the finding
        svc.health.committed(False, f"{type(exc).__name__}: {str(exc)[:200]}")
    else:
        svc.health.committed(True)


async def watch_once(svc: SiteUnit) -> dict[str, str]:
    """One round: probe the store, compare problems, raise and resolve system alerts."""
    await _probe_store(svc)
    now = check(svc)
    before = svc.health.problems
    svc.health.problems = now
    for rule, detail in now.items():
        if rule not in before:
            log.error("server problem: %s", detail)
            if not open_direct(svc.book, "system", rule=rule):
                with contextlib.suppress(Exception):  # in memory and in the log even so
                    await asyncio.wait_for(
                        svc.outbox.raise_direct("system", "", rule, detail), 15)
    for rule in before:
        if rule not in now:
            log.warning("server problem cleared: %s", rule)
            for alert in open_direct(svc.book, "system", rule=rule):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(svc.outbox.resolve_direct(alert, "cleared"), 15)
    return now


def system_alert(svc: SiteUnit, rule: str) -> Callable[[str], Awaitable[None]]:
    """A callback raising the system alert ``rule`` (once while it is open) with the
    detail it is given: for background tasks outside the server (the anchoring's refusal
    to sign a head over audit entries whose MAC fails)."""
    async def raise_it(detail: str) -> None:
        log.error("server problem: %s", detail)
        if not open_direct(svc.book, "system", rule=rule):
            with contextlib.suppress(Exception):  # logged even so
                await asyncio.wait_for(svc.outbox.raise_direct("system", "", rule, detail), 15)
    return raise_it


def should_beat(svc: SiteUnit) -> bool:
    """Ping only while the ticker runs and the store commits."""
    health: Health = svc.health
    return health.ticker_fresh(stall_limit_s(svc)) and health.store_ok


async def run_heartbeat(svc: SiteUnit | Sequence[SiteUnit]) -> None:
    """Background task: GET the heartbeat URL while every site's ticker and store are
    healthy (one heartbeat for the deployment, however many sites it watches)."""
    from coverwatch.notify.notifier import redact_url

    sites = [svc] if not isinstance(svc, Sequence) else list(svc)
    svc = sites[0]
    url = svc.settings.heartbeat_url
    if not url:
        return
    shown = redact_url(url)
    async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
        while True:
            if all(should_beat(s) for s in sites):
                try:
                    r = await client.get(url)
                    if r.status_code >= 400:
                        log.warning("heartbeat to %s answered HTTP %d", shown, r.status_code)
                except httpx.HTTPError as exc:
                    log.warning("heartbeat to %s failed: %s", shown, type(exc).__name__)
            else:
                log.error("heartbeat withheld: the server is not healthy")
            await asyncio.sleep(svc.settings.heartbeat_s)
