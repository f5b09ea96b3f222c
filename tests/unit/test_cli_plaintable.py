"""The replay summary's plain table (cli/plaintable.py) is exactly Rich's text off a
terminal, and declines what it does not render itself."""

from __future__ import annotations

import io
import random

from rich.console import Console
from rich.table import Table

from coverwatch.cli.plaintable import plain_table

__all__: list[str] = []

_WORDS = ["p0001", "cover", "16 min 39 s", "-", "0", "12", "100.0", "inactive", "a", "gate-7",
          "x" * 14, "Cover", "of", "Yard", "(fictional),", "2026-03-22T06:00:00Z", "to", ""]


def _rich(title: str, headers: list[str], right: list[bool], rows: list[list[str]],
          width: int) -> str:
    table = Table(title=title, title_justify="left")
    for h, r in zip(headers, right, strict=True):
        table.add_column(h, justify="right" if r else "left")
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    Console(file=out, width=width).print(table)
    return out.getvalue()


def test_random_tables_render_as_rich_does() -> None:
    rng = random.Random(25)
    taken = 0
    for _ in range(400):
        n = rng.randint(1, 7)
        headers = [rng.choice(["Post", "Rule", "Need", "Cover %", "Longest lapse"]) for _ in
                   range(n)]
        right = [rng.random() < 0.5 for _ in range(n)]
        rows = [[rng.choice(_WORDS) for _ in range(n)] for _ in range(rng.randint(1, 6))]
        title = " ".join(rng.choice(_WORDS[:-1]) for _ in range(rng.randint(1, 12)))
        width = rng.randint(20, 120)
        console = Console(file=io.StringIO(), width=width)
        got = plain_table(console, title, headers, right, rows)
        if got is not None:
            taken += 1
            assert got == _rich(title, headers, right, rows, width), (title, headers, rows, width)
    assert taken > 100


def test_it_declines_markup_emoji_wide_text_and_terminals() -> None:
    console = Console(file=io.StringIO(), width=80)
    assert plain_table(console, "t", ["A"], [False], [["[b]x[/b]"]]) is None
    assert plain_table(console, "t :fire:", ["A"], [False], [["x"]]) is None
    assert plain_table(console, "t", ["A"], [False], [["été"]]) is None
    assert plain_table(console, "t", ["A"], [False], [["x" * 90]]) is None
    assert plain_table(console, "t 06:00:00Z", ["A"], [False], [["x" * 12]]) is not None
    color = Console(file=io.StringIO(), width=80, force_terminal=True)
    assert plain_table(color, "t", ["A"], [False], [["x"]]) is None
