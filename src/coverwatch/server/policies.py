"""Escalation policies from the site file: the default one and the one for device alarms.

The site file lets people write ``supervisor`` or ``duty-inspector``; the domain
wants ``role:supervisor`` / ``user:duty-inspector`` (:func:`_target`).
"""

from __future__ import annotations

from coverwatch.domain.alerts import EscalationLevel as PolicyLevel
from coverwatch.domain.alerts import EscalationPolicy
from coverwatch.domain.roles import ROLES
from coverwatch.formats.sitefile import SiteDocument

__all__ = ["policy_from", "sos_policy_from"]


def _target(written: str) -> str:
    """A site-file target as the domain spells it: a bare role or user name gets its prefix."""
    if "://" in written or written.partition(":")[0] in ("role", "user"):
        return written
    return f"role:{written}" if written in ROLES else f"user:{written}"


def policy_from(doc: SiteDocument) -> EscalationPolicy:
    """The site file's escalation levels as the domain's policy.

    The site file lets people write ``supervisor`` or ``duty-inspector``;
    the domain wants ``role:supervisor`` / ``user:duty-inspector``.
    """
    return EscalationPolicy(tuple(
        PolicyLevel(lv.after_s, tuple(_target(t) for t in lv.notify)) for lv in doc.escalation
    ))


def sos_policy_from(doc: SiteDocument) -> EscalationPolicy:
    """How device alarms (sos, fall) escalate: the site's ``escalation.sos`` levels, or
    else every level of the default policy at once (nobody waits on an SOS)."""
    if doc.sos_escalation is not None:
        return EscalationPolicy(tuple(
            PolicyLevel(lv.after_s, tuple(_target(t) for t in lv.notify))
            for lv in doc.sos_escalation))
    return EscalationPolicy(tuple(
        PolicyLevel(0.0, tuple(_target(t) for t in lv.notify)) for lv in doc.escalation))
