"""The accuracy a fix gets when its device reported none.

A fix without accuracy must never count as exact (0 m): phones indoors are
typically 40-60 m off. Until the site file carries its own
``default_accuracy_m`` (the field-devices work), :data:`FALLBACK_ACCURACY_M`
is the one place this default lives; :func:`default_accuracy_m` already
prefers the site's value when the site has one.
"""

from __future__ import annotations

from coverwatch.domain.site import Site

__all__ = ["FALLBACK_ACCURACY_M", "default_accuracy_m"]

#: Conservative: the upper end of an indoor phone fix without positioning infrastructure.
FALLBACK_ACCURACY_M = 50.0


def default_accuracy_m(site: Site | None) -> float:
    """The site's ``default_accuracy_m`` if it has one, else :data:`FALLBACK_ACCURACY_M`."""
    value = getattr(site, "default_accuracy_m", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return FALLBACK_ACCURACY_M
