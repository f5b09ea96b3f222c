"""The accuracy a fix gets, and where it came from, whatever the device sent.

A fix without a usable accuracy must never count as exact (0 m): phones
indoors are typically 40-60 m off. Apps send no accuracy, ``0`` (Traccar
Client 8 for every GPS-provider fix, OsmAnd's ``hdop`` when its fix has
none), negative values (the transistorsoft SDK's "unknown", -1) and unitless
HDOP (GPSLogger's ``<hdop>``). :func:`choose_accuracy` is the one rule:

========================  ===============================  ==================
what was sent             accuracy                         ``accuracy_source``
========================  ===============================  ==================
metres, > 0               as sent                          ``reported``
``hdop`` in metres, > 0   as sent (OsmAnd fills it so)     ``hdop``
unitless HDOP, > 0        HDOP x :data:`UERE_M`            ``hdop-scaled``
none, 0, negative, NaN    the site's ``default_accuracy_m``  ``default``
========================  ===============================  ==================

:func:`default_accuracy_m` prefers the site's ``default_accuracy_m`` and falls
back to :data:`FALLBACK_ACCURACY_M`.
"""

from __future__ import annotations

import math
from typing import Any

from coverwatch.domain.site import Site

__all__ = ["ACCURACY_SOURCES", "FALLBACK_ACCURACY_M", "UERE_M", "choose_accuracy",
           "default_accuracy_m", "usable_accuracy"]

#: Conservative: the upper end of an indoor phone fix without positioning infrastructure.
FALLBACK_ACCURACY_M = 50.0
#: User-equivalent range error: a unitless HDOP times this is metres (one sigma, a
#: typical single-frequency phone receiver; conservative for a clear sky).
UERE_M = 5.0
ACCURACY_SOURCES = ("reported", "hdop", "hdop-scaled", "default")


def default_accuracy_m(site: Site | None) -> float:
    """The site's ``default_accuracy_m`` if it has one, else :data:`FALLBACK_ACCURACY_M`."""
    value = getattr(site, "default_accuracy_m", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return FALLBACK_ACCURACY_M


def usable_accuracy(value: Any) -> float | None:
    """``value`` as metres if it says something (finite and above 0), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def choose_accuracy(default_m: float, *, reported: Any = None, hdop_m: Any = None,
                    hdop: Any = None) -> tuple[float, str]:
    """The accuracy (metres) and its source: reported, else hdop in metres, else a
    unitless HDOP scaled by :data:`UERE_M`, else ``default_m``."""
    value = usable_accuracy(reported)
    if value is not None:
        return value, "reported"
    value = usable_accuracy(hdop_m)
    if value is not None:
        return value, "hdop"
    value = usable_accuracy(hdop)
    if value is not None:
        return value * UERE_M, "hdop-scaled"
    return default_m, "default"
