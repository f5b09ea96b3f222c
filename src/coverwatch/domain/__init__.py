"""The pure domain: sites, posts, cover rules, events and times.

Nothing here does I/O or reads the clock. Times are integer microseconds since
the Unix epoch (UTC), so comparisons such as ``f.t + stale <= t`` are exact.
"""

from coverwatch.domain.events import (
    DutyEvent,
    EventBatch,
    FixColumns,
    FlagEvent,
    GateEvent,
    OfficerRegistry,
)
from coverwatch.domain.geometry import project_latlon, signed_distance
from coverwatch.domain.site import LatLon, Post, Rule, Site
from coverwatch.domain.time import US_PER_S, format_time, parse_time, seconds_to_us

__all__ = [
    "US_PER_S",
    "DutyEvent",
    "EventBatch",
    "FixColumns",
    "FlagEvent",
    "GateEvent",
    "LatLon",
    "OfficerRegistry",
    "Post",
    "Rule",
    "Site",
    "format_time",
    "parse_time",
    "project_latlon",
    "seconds_to_us",
    "signed_distance",
]
