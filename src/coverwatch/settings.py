"""Server settings: one frozen object built by the CLI (or tests) and passed in.

Secrets come from the environment, never from command-line arguments (which
other users of the machine can read in the process list).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `coverwatch serve` needs to know.

    ``db_url`` None means the embedded SQLite store in ``data_dir``.
    ``lateness_s`` is how long the live engine waits for stragglers before an
    instant is final; ``max_future_s`` refuses device clocks that run ahead;
    ``recovery_s`` is how long after a restart the horizon is held so that
    clients can re-send what they could not deliver while the server was down.
    """

    site_path: Path
    data_dir: Path = Path("data")
    # Further sites of the same deployment (docs/sites.md): each has its own file,
    # versions, orders, roster, devices and alerts; ``site_path`` is the first.
    more_sites: tuple[Path, ...] = ()
    # URLs may carry passwords, so they stay out of repr (and so out of logs).
    db_url: str | None = field(default=None, repr=False)
    mqtt_url: str | None = field(default=None, repr=False)
    lateness_s: float = 2.0
    # The watermark waits for active devices up to this long (docs/semantics.md).
    max_lateness_s: float = 10.0
    max_future_s: float = 30.0
    recovery_s: float = 10.0
    tick_s: float = 0.025  # alert latency past the watermark is up to one tick
    session_ttl_s: float = 12 * 3600.0
    login_attempts_per_minute: int = 10
    max_batch_events: int = 50_000
    webhook_secret: str | None = field(  # never in repr: settings may end up in logs
        default_factory=lambda: os.environ.get("COVERWATCH_WEBHOOK_SECRET") or None, repr=False
    )
    secure_cookies: bool = False
    approving_role: str = "approver"  # may apply site changes that weaken cover
    # How long an on-duty officer has to re-acknowledge orders that changed during
    # their shift before an "unbriefed" alert is raised (docs/orders.md).
    reacknowledge_within_s: float = 600.0
    demo: bool = False
    # OwnTracks over MQTT: ((user/device, coverwatch device name), ...); topic
    # owntracks/<user>/<device> is read as that device (docs/interop.md).
    owntracks_mqtt: tuple[tuple[str, str], ...] = ()
    # Each contact gets 1 + notify_retries attempts of notify_timeout_s each.
    notify_timeout_s: float = 10.0
    notify_retries: int = 2
    # The watched watcher (coverwatch.server.watchdog): how often it looks, and when a
    # stalled ticker or a lagging engine counts as a problem (system alert, /readyz 503).
    watch_s: float = 5.0
    ticker_stall_s: float = 15.0
    max_engine_lag_s: float = 10.0
    # An outbound heartbeat for a dead-man's-switch monitor; may carry a token.
    heartbeat_url: str | None = field(default=None, repr=False)
    heartbeat_s: float = 60.0
    # Signed anchors of the audit chain's head (docs/evidence.md): how often, to which
    # append-only file (None: "anchors.jsonl" beside the audit key) and where else.
    anchor_every_s: float = 3600.0
    purge_every_s: float = 86_400.0  # raw positions past the site's retention (docs/evidence.md)
    anchor_file: Path | None = None
    anchor_url: str | None = field(  # an Apprise URL (mailto:…) or https webhook
        default_factory=lambda: os.environ.get("COVERWATCH_ANCHOR_URL") or None, repr=False
    )
    # Witnesses of each signed tree head (coverwatch.evidence.witness): an RFC 3161
    # time-stamping authority, and copies sent to files, webhooks or Apprise URLs; a
    # witness that cannot be reached is tried again every witness_retry_s.
    tsa_url: str | None = field(
        default_factory=lambda: os.environ.get("COVERWATCH_TSA_URL") or None, repr=False)
    witnesses: tuple[str, ...] = field(default_factory=lambda: tuple(
        os.environ.get("COVERWATCH_WITNESSES", "").split()), repr=False)
    witness_retry_s: float = 60.0
    # Request bodies (docs/security.md): authenticated callers, and public routes or
    # callers without a credential. Both are enforced before the body is read.
    max_body_bytes: int = 16 * 1024 * 1024
    public_body_bytes: int = 64 * 1024
    # Proxies whose X-Forwarded-For is believed (addresses or networks); none by default.
    trusted_proxies: tuple[str, ...] = ()
    # How phones reach this server (e.g. https://cover.example.org), for enrolment links.
    public_url: str | None = None
    # The daily activity report by mail (coverwatch.reports.schedule, docs/evidence.md): at
    # "HH:MM" site time, the previous day's report goes to these targets (role:, user:, URLs).
    daily_report_at: str | None = None
    daily_report_to: tuple[str, ...] = field(default=(), repr=False)  # URLs may carry tokens

    @property
    def site_paths(self) -> tuple[Path, ...]:
        """Every site file of the deployment, the first one first."""
        return (self.site_path, *self.more_sites)
    # Distributed mode (docs/scale.md): the NATS URL (None: one process, as always; several
    # servers of one NATS cluster comma-separated), this process's role (gateway, worker or
    # all), the prefix of the bus's names and the replicas of its stream and buckets (None:
    # one when created, an existing stream's left alone; a number: created so and reconciled).
    bus_url: str | None = field(default=None, repr=False)
    role: str = "all"
    bus_prefix: str = "coverwatch"
    bus_replicas: int | None = None
    # Leases per partition of the sites (None: a lease per site); the same on every node.
    bus_partitions: int | None = None
