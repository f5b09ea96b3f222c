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
    # How phones reach this server (e.g. https://cover.example.org), for enrolment links.
    public_url: str | None = None
