"""Changing a running site's rules: classified, authorised, recorded, switched at an instant.

A new site file is compared with the one in force (:func:`coverwatch.domain.changes.diff_sites`).

* A change that weakens cover (lower ``need``, larger distances, longer grace, a
  removed rule or post, narrower activation, …) must be applied by a user with
  the configured approving role (``Settings.approving_role``, by default
  ``approver``: a senior rank), with a written reason.
* A change that only strengthens cover, or is neutral, needs an admin.

Both are recorded in the audit log with the diff and the reason. The new rules
are in force from the live horizon at the moment of applying (``effective_at``;
in distributed mode, from the moment of applying, handed to the site's owner
through its stream: ``BusCover.control``);
each version's text and that instant are kept in the store, so a restart
re-evaluates history under the rules that were in force at each moment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coverwatch.domain.changes import diff_sites, required_approval
from coverwatch.domain.time import format_time
from coverwatch.errors import CoverwatchError
from coverwatch.formats.sitefile import SiteDocument, load_site_text_document
from coverwatch.storage.versions import SiteVersion, load_versions, save_versions

if TYPE_CHECKING:
    from coverwatch.server.services import Services

__all__ = [
    "MIN_REASON_CHARS",
    "ApplyRefused",
    "ApplyResult",
    "apply_site",
]

MIN_REASON_CHARS = 10


class ApplyRefused(CoverwatchError):
    """The caller may not apply this change (``status`` 403) or it is incomplete (422)."""

    def __init__(self, status: int, message: str, diff: dict[str, Any] | None = None) -> None:
        self.status = status
        self.diff = diff
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    changed: bool
    overall: str
    required: str
    effective_at: str | None
    diff: dict[str, Any]


def _write_atomically(path: Path, text: str) -> None:
    # Write beside the target and rename, so a crash never leaves half a site file.
    fd, tmp = tempfile.mkstemp(prefix=".site-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def apply_site(
    svc: Services, text: str, *, actor: str, roles: frozenset[str], reason: str
) -> ApplyResult:
    """Validate, classify, authorise and apply a new site file. See the module docstring."""
    import asyncio

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
        await asyncio.to_thread(_write_atomically, path, doc.source)
        await asyncio.to_thread(save_versions, svc.store, versions)
        svc.adopt_site(doc)
        await asyncio.to_thread(svc._apply_changes, changes)
    await asyncio.to_thread(
        svc.store.audit_change, actor, "site.applied", doc.site.id,
        {"class": diff.overall, "approval": need, "reason": reason.strip(),
         "effective_at": format_time(effective), "diff": summary},
    )
    if svc.bus is not None:  # 503 if the stream is down: applying the same file again resends
        await svc.bus.publish_site(doc.source, effective)
    return ApplyResult(True, diff.overall, need, format_time(effective), summary)
