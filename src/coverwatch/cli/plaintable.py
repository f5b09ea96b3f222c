"""A simple table written as Rich writes it to a file or pipe, without Rich's layout.

Rich measures, wraps and renders every cell through its generic machinery: the
replay's summary of 200 rules took 0.15-0.18 s of CPU, a tenth of a whole
replay. Off a terminal (no colours: only the characters count) a table of
plain one-line ASCII cells that fits the width needs none of that: each column
as wide as its widest cell, the title wrapped at spaces to the table's width.
:func:`plain_table` returns exactly Rich's text for such a table and None for
anything else (then Rich renders it); tests/unit/test_cli_plaintable.py checks
it against Rich on random tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from coverwatch.cli.plainconsole import PlainConsole

__all__ = ["plain_cell", "plain_table"]


def plain_cell(text: str) -> bool:
    """Whether Rich renders ``text`` as written (off a terminal)."""
    # Markup, emoji codes and anything wider or stranger than one printable ASCII
    # character per cell are Rich's to render.
    from rich._emoji_replace import _emoji_replace

    return text.isascii() and text.isprintable() and "[" not in text and \
        (":" not in text or _emoji_replace(text) == text)


def plain_table(console: Console | PlainConsole, title: str, headers: Sequence[str],
                right: Sequence[bool],
                rows: Sequence[Sequence[str]]) -> str | None:
    """Rich's rendering (default box, left-justified title) of this table on ``console``,
    or None when it is not that simple or ``console`` shows styles."""
    if console.is_terminal or console.color_system is not None or not rows:
        return None
    if not all(plain_cell(c) for row in (headers, *rows) for c in row):
        return None
    words = title.split(" ")
    if not plain_cell(title) or "" in words:
        return None
    n = len(headers)
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(n)]
    total = sum(widths) + 3 * n + 1
    if total > console.width or max(len(w) for w in words) > total:
        return None
    lines: list[str] = []
    line = words[0]
    for w in words[1:]:
        if len(line) + 1 + len(w) <= total:
            line += " " + w
        else:
            lines.append(line)
            line = w
    lines.append(line)
    out = [ln.ljust(total) for ln in lines]

    def row(cells: Sequence[str], bar: str) -> str:
        parts = [c.rjust(w) if r else c.ljust(w)
                 for c, w, r in zip(cells, widths, right, strict=True)]
        return bar + bar.join(f" {p} " for p in parts) + bar

    def rule(left: str, mid: str, fill: str, end: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + end

    out.append(rule("┏", "┳", "━", "┓"))
    out.append(row(headers, "┃"))
    out.append(rule("┡", "╇", "━", "┩"))
    out += [row(r, "│") for r in rows]
    out.append(rule("└", "┴", "─", "┘"))
    return "\n".join(out) + "\n"
