"""Escalation policies from the site file: the default one and the one for device alarms.

Thin functions over :attr:`SiteDocument.policy` / :attr:`SiteDocument.sos_policy`,
which the site file builds itself (``formats/_siteescalation.py``); kept for the
callers that still use them.
"""

from __future__ import annotations

from coverwatch.domain.alerts import EscalationPolicy
from coverwatch.formats.sitefile import SiteDocument

__all__ = ["policy_from", "sos_policy_from"]


def policy_from(doc: SiteDocument) -> EscalationPolicy:
    """The site file's escalation levels as the domain's policy.

    The site file lets people write ``supervisor`` or ``duty-inspector``;
    the domain wants ``role:supervisor`` / ``user:duty-inspector``.
    """
    return doc.policy


def sos_policy_from(doc: SiteDocument) -> EscalationPolicy:
    """How device alarms (sos, fall) escalate: the site's ``escalation.sos`` levels, or
    else every level of the default policy at once (nobody waits on an SOS)."""
    return doc.sos_policy
