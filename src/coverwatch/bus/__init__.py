"""The distributed mode's foundation on NATS JetStream.

- ``log``: the ``<prefix>-events`` stream, one subject per site; publish with
  the event key as ``Nats-Msg-Id`` and wait for the PubAck; watermarks.
- ``leases``: site ownership in the ``<prefix>-leases`` KV bucket
  (compare-and-set, renewal, takeover, balanced assignment) and the dead-man check.
- ``checkpoints``: per-site stream sequence + evaluator state in ``<prefix>-checkpoints``.
- ``evaluator``: the interface a worker feeds (the live engine's adapter is
  ``server/buscover.py``), and a reference evaluator.
- ``worker``: the worker loop; ``siterun``: one owned site's run, and the lease keeper.

See docs/scale.md for the design and its failure modes.
"""

from coverwatch.bus.checkpoints import Checkpoint, CheckpointConflict, Checkpoints
from coverwatch.bus.evaluator import EvaluatorFactory, EventTally, SiteEvaluator
from coverwatch.bus.leases import (
    DeadmanCheck,
    LeaseTable,
    LeaseView,
    balanced_moves,
    open_bucket,
    watch_for_orphans,
)
from coverwatch.bus.log import (
    BusMessage,
    BusNames,
    EventLog,
    Published,
    connect,
    reconcile_replicas,
    server_urls,
)
from coverwatch.bus.worker import LeaseKeeper, OutputSink, SiteRun, Worker, WorkerSettings

__all__ = [
    "BusMessage",
    "BusNames",
    "Checkpoint",
    "CheckpointConflict",
    "Checkpoints",
    "DeadmanCheck",
    "EvaluatorFactory",
    "EventLog",
    "EventTally",
    "LeaseKeeper",
    "LeaseTable",
    "LeaseView",
    "OutputSink",
    "Published",
    "SiteEvaluator",
    "SiteRun",
    "Worker",
    "WorkerSettings",
    "balanced_moves",
    "connect",
    "open_bucket",
    "reconcile_replicas",
    "server_urls",
    "watch_for_orphans",
]
