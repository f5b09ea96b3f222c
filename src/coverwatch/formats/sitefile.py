"""The site-file loader: reads a site's YAML file and validates it into a
:class:`coverwatch.domain.Site`.

This is an adapter around the pure core. The YAML is composed into nodes (not
constructed into Python objects) so every value keeps its line and column, and
the whole file is checked before anything is built: a :class:`SiteFileError`
lists every problem found, each with file, line, column (1-based) and the
field path, e.g. ``posts[0].rules[1].within_m``. The schema is documented in
docs/site-file.md.

The work is done in private modules, one per concern: ``_siteyaml`` (line-aware
YAML reading), ``_sitekeys`` (the keys of each mapping), ``_sitebase`` (the file
as a whole and its top-level fields), ``_siteposts`` and ``_siterules`` (posts and
their rules), ``_siteways`` (walkways, barriers, speeds) and ``_siteescalation``
(the escalation section and the domain's policies built from it) and
``_siteplanimage`` (the plan's background: image, control points, map tiles).
"""

from __future__ import annotations

import os

from coverwatch.domain.site import Site
from coverwatch.errors import Problem, SiteFileError
from coverwatch.formats._sitebase import SiteDocument, _SiteChecker
from coverwatch.formats._siteescalation import WrittenLevel
from coverwatch.formats._siteplanimage import MAX_PLAN_IMAGE_BYTES
from coverwatch.formats._siteyaml import ID_PATTERN
from coverwatch.formats.yamldepth import paused_gc

__all__ = [
    "ID_PATTERN",
    "MAX_PLAN_IMAGE_BYTES",
    "SiteDocument",
    "WrittenLevel",
    "load_site",
    "load_site_document",
    "load_site_text",
    "load_site_text_document",
]


def load_site(path: str | os.PathLike[str]) -> Site:
    """Load and validate a site file. Raises :class:`SiteFileError`."""
    return load_site_document(path).site


def load_site_text(text: str, path: str = "<string>") -> Site:
    """Load and validate a site from YAML text; ``path`` names it in problems."""
    return load_site_text_document(text, path).site


def load_site_document(path: str | os.PathLike[str]) -> SiteDocument:
    """Load a site file with its escalation section and source. Raises
    :class:`SiteFileError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SiteFileError([Problem(name, None, None, None, "no such file")]) from None
    except IsADirectoryError:
        message = "is a directory, not a file"
        raise SiteFileError([Problem(name, None, None, None, message)]) from None
    except OSError as e:
        message = f"cannot read the file: {e.strerror or e}"
        raise SiteFileError([Problem(name, None, None, None, message)]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        # Count characters, not bytes, so the column matches an editor's.
        prefix = before[before.rfind(b"\n") + 1 :]
        column = len(prefix.decode("utf-8-sig", errors="replace")) + 1
        message = f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        raise SiteFileError([Problem(name, line, column, None, message)]) from None
    return load_site_text_document(text, name)


def load_site_text_document(text: str, path: str = "<string>") -> SiteDocument:
    """Like :func:`load_site_document`, from YAML text."""
    with paused_gc():
        return _SiteChecker(path, text).run()

