"""Where Rich would write plain text, the same text without importing Rich.

Importing Rich's console took 23-25 ms of CPU of every replay's start (a sixth of
what a replay's start costs over pyarrow's). Off a terminal Rich writes no
styles: a line of printable ASCII without markup or emoji codes comes out as
written. :func:`plain_console` says whether Rich's ``Console(stderr=...)`` would
be plain here, and how wide, by Rich's own rules (rich/console.py: ``is_terminal``,
``size``), and declines (None: use Rich) whenever an environment variable Rich
reads could change that, in Jupyter or IDLE, on Windows, or for a stream that is
a terminal or not UTF-8. tests/unit/test_cli_plainconsole.py checks it against Rich.
"""

from __future__ import annotations

import builtins
import os
import sys
from dataclasses import dataclass
from typing import TextIO

__all__ = ["PlainConsole", "plain_console", "plain_line"]

# Rich reads these to force a terminal, colours or a size (COLUMNS: the width).
_RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES",
             "JUPYTER_COLUMNS", "JUPYTER_LINES")


@dataclass(frozen=True, slots=True)
class PlainConsole:
    """What :func:`coverwatch.cli.plaintable.plain_table` and the replay ask of a console."""

    file: TextIO
    width: int
    is_terminal: bool = False
    color_system: None = None

    def line(self, text: str, *, soft_wrap: bool = False) -> bool:
        """Write ``text`` and a newline as Rich's ``print`` would (markup, emoji and,
        unless ``soft_wrap``, wrapping considered); False, writing nothing, when Rich
        must do it."""
        if (not soft_wrap and len(text) > self.width) or not plain_line(text):
            return False
        self.file.write(text + "\n")
        return True


def plain_line(text: str) -> bool:
    """Whether Rich prints ``text`` as written: printable ASCII, no markup, no emoji code."""
    from coverwatch.cli.plaintable import plain_cell

    return plain_cell(text)


def plain_console(*, stderr: bool = False) -> PlainConsole | None:
    """The console Rich's ``Console(stderr=stderr)`` would be if it writes plainly; else None."""
    if os.name == "nt" or any(name in os.environ for name in _RICH_ENV):
        return None
    if hasattr(builtins, "get_ipython") or \
            getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return None
    file = sys.stderr if stderr else sys.stdout
    isatty = getattr(file, "isatty", None)
    try:
        if isatty is None or isatty():
            return None
    except ValueError:  # closed
        return None
    if not (getattr(file, "encoding", "utf-8") or "utf-8").lower().startswith("utf"):
        return None  # Rich would draw tables in ASCII
    width: int | None = None
    for fd in (0, 1, 2):  # as Rich: the first standard stream that is a terminal
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    return PlainConsole(file, width or 80)
