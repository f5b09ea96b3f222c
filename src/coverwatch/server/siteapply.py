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
from typing import Any

from coverwatch.errors import CoverwatchError

__all__ = [
    "MIN_REASON_CHARS",
    "ApplyRefused",
    "ApplyResult",
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


def write_atomically(path: Path, text: str) -> None:
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
