"""The cover engine (pure core): exact event-time evaluation of cover rules.

:class:`CoverEngine` is fed events in chunks and advanced through event time;
:func:`evaluate` runs it over a whole in-memory input, as a replay does.
"""

from coverwatch.engine._cover import CoverEngine, RuleState
from coverwatch.engine._evaluate import Evaluation, evaluate, sort_batch
from coverwatch.engine._state import (
    engine_conditions,
    engine_positions,
    engine_state,
    restore_engine,
)
from coverwatch.engine.results import CoverChange, Lapse, RuleStats, TimelinePoint

__all__ = [
    "CoverChange",
    "CoverEngine",
    "Evaluation",
    "Lapse",
    "RuleState",
    "RuleStats",
    "TimelinePoint",
    "engine_conditions",
    "engine_positions",
    "engine_state",
    "evaluate",
    "restore_engine",
    "sort_batch",
]
