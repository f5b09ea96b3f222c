"""New rules come into force: a site file applied (validated, classified and authorised
as :mod:`coverwatch.server.siteapply` describes) or re-read from disk."""

from __future__ import annotations

import asyncio

from coverwatch.domain.changes import diff_sites, required_approval
from coverwatch.domain.time import format_time
from coverwatch.formats.sitefile import SiteDocument, load_site_text_document
from coverwatch.server.handlers.alerts import apply_cover_changes
from coverwatch.server.happenings import Happening, SiteAdopted
from coverwatch.server.policies import policy_from, sos_policy_from
from coverwatch.server.siteapply import (
    MIN_REASON_CHARS,
    ApplyRefused,
    ApplyResult,
    write_atomically,
)
from coverwatch.server.unit import SiteUnit
from coverwatch.storage.versions import SiteVersion, load_versions, save_versions

__all__ = ["adopt_site", "apply_site", "reload_site"]


def adopt_site(unit: SiteUnit, doc: SiteDocument) -> list[Happening]:
    """Make ``doc`` the site in force (the engine has already switched)."""
    unit.doc = doc
    unit.book.policy = policy_from(doc)
    unit.sos_policy = sos_policy_from(doc)
    return [SiteAdopted(doc)]


async def reload_site(unit: SiteUnit, actor: str, roles: frozenset[str],
                      reason: str = "") -> ApplyResult:
    """Re-read the site file from disk and apply it like any other change.

    Raises SiteFileError for an invalid file (the running site is untouched)
    and ApplyRefused when the caller may not apply this change.
    """
    text = await asyncio.to_thread(unit.settings.site_path.read_text, encoding="utf-8")
    return await apply_site(unit, text, actor=actor, roles=roles, reason=reason)

async def apply_site(
    svc: SiteUnit, text: str, *, actor: str, roles: frozenset[str], reason: str
) -> ApplyResult:
    """Validate, classify, authorise and apply a new site file. See the module docstring."""
    path = svc.settings.site_path
    doc: SiteDocument = load_site_text_document(text, str(path))
    diff = diff_sites(svc.site, doc.site)
    summary = diff.to_dict()
    need = required_approval(diff)
    if diff.overall == "none" and doc.source == svc.doc.source:
        if svc.bus is not None:  # hand the version in force to the evaluators (again)
            versions = await asyncio.to_thread(load_versions, svc.store)
            if versions and versions[-1].source == doc.source:
                await svc.bus.publish_site(doc.source, versions[-1].effective_us)
        return ApplyResult(False, "none", need, None, summary)
    if need == "approver":
        role = svc.settings.approving_role
        if role not in roles:
            raise ApplyRefused(
                403, f"this change weakens cover; it must be applied by a user with the "
                f"'{role}' role", summary)
        if len(reason.strip()) < MIN_REASON_CHARS:
            raise ApplyRefused(
                422, f"this change weakens cover; give a written reason (at least "
                f"{MIN_REASON_CHARS} characters)", summary)
    elif "admin" not in roles:
        raise ApplyRefused(403, "changing the site's rules needs an admin", summary)

    async with svc.lock:
        if svc.evaluates:
            effective = svc.live.horizon
            changes = svc.live.switch_site(doc.site)
        else:  # distributed: the site's owner switches when its horizon reaches this instant
            effective, changes = svc.clock(), []
        versions = await asyncio.to_thread(load_versions, svc.store)
        versions.append(SiteVersion(effective, doc.source))
        await asyncio.to_thread(write_atomically, path, doc.source)
        await asyncio.to_thread(save_versions, svc.store, versions)
        happened = adopt_site(svc, doc)
        happened += await asyncio.to_thread(apply_cover_changes, svc, changes)
    await svc.subscribers.dispatch(happened)
    await asyncio.to_thread(
        svc.store.audit_change, actor, "site.applied", doc.site.id,
        {"class": diff.overall, "approval": need, "reason": reason.strip(),
         "effective_at": format_time(effective), "diff": summary},
    )
    if svc.bus is not None:  # 503 if the stream is down: applying the same file again resends
        await svc.bus.publish_site(doc.source, effective)
    return ApplyResult(True, diff.overall, need, format_time(effective), summary)
