"""The handlers: everything that changes a site's state, as plain functions of
its unit (:class:`coverwatch.server.unit.SiteUnit`).

Each changes the unit under its lock, stores what it decided, and hands what
happened (:mod:`coverwatch.server.happenings`) to the subscribers:

* :mod:`.ingest`: a fix, duty change or device report enters (group commit);
* :mod:`.tick`: time passes: the horizon advances, lapses raise and resolve alerts;
* :mod:`.alerts`: cover changes become alerts, levels fall due, a person acts;
* :mod:`.site`: new rules come into force;
* :mod:`.startup`: a unit rebuilt from the store, as after a restart.
"""

from __future__ import annotations

from coverwatch.server.handlers.alerts import (
    acknowledge,
    apply_cover_changes,
    close_alert,
    escalate,
)
from coverwatch.server.handlers.ingest import CommitQueue, ingest
from coverwatch.server.handlers.site import adopt_site, reload_site
from coverwatch.server.handlers.startup import build
from coverwatch.server.handlers.tick import tick

__all__ = ["CommitQueue", "acknowledge", "adopt_site", "apply_cover_changes", "build",
           "close_alert", "escalate", "ingest", "reload_site", "tick"]
