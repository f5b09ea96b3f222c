"""What retention purged, for an evidence pack: :func:`purge_records` lives in
:mod:`coverwatch.reports.purged`, shared with the daily report and ``/api/v1/report``."""

from __future__ import annotations

from coverwatch.reports.purged import purge_records

__all__ = ["purge_records"]
