"""Response header values built from input, never split by a newline.

A header value holding a CR or LF either splits the response (a forged header
or body) or, as the HTTP library refuses it, ends the response half-sent after
the work behind it was done and audited. :func:`attachment` builds a
``Content-Disposition`` from a file name keeping only safe characters;
:func:`refuse_control_characters` turns a query value with a control character
into a 422 before any work starts.
"""

from __future__ import annotations

import re

from fastapi import HTTPException

__all__ = ["attachment", "refuse_control_characters"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def attachment(name: str) -> dict[str, str]:
    """A ``Content-Disposition: attachment`` header for ``name``, reduced to letters,
    digits, ``.``, ``_`` and ``-`` (anything else becomes ``_``)."""
    safe = _UNSAFE.sub("_", name).strip("._") or "download"
    return {"content-disposition": f'attachment; filename="{safe[:200]}"'}


def refuse_control_characters(**values: str | None) -> None:
    """422 naming the first field whose value holds a control character (a newline,
    a tab, a NUL...): no time, id or name in a query has one."""
    for field, value in values.items():
        if value is not None:
            found = _CONTROL.search(value)
            if found:
                raise HTTPException(422, f"{field}: holds the control character "
                                         f"U+{ord(found.group()):04X} at position "
                                         f"{found.start() + 1}; write it without one")
