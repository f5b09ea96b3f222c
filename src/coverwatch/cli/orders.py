"""`coverwatch orders SITE`: print every post's orders, generated from its rules.

Markdown by default; ``--format html`` writes a standalone printable page with
a signature block. ``--out FILE`` writes to a file instead of stdout.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from coverwatch.errors import SiteFileError

__all__ = ["OrdersFormat", "orders"]


class OrdersFormat(StrEnum):
    """Output formats of `coverwatch orders`."""

    markdown = "markdown"
    html = "html"


def orders(
    site: Annotated[Path, typer.Argument(help="The site file (YAML).")],
    format: Annotated[
        OrdersFormat, typer.Option("--format", help="markdown, or html for printing.")
    ] = OrdersFormat.markdown,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    patrol_plan: Annotated[
        Path | None, typer.Option("--patrol-plan", help="Add this randomised plan of the day "
                                  "(written by `coverwatch plan randomise --out`).")
    ] = None,
) -> None:
    """Print each post's orders, generated from its cover rules, with their versions."""
    from coverwatch.formats.orderdocs import orders_html, orders_markdown
    from coverwatch.formats.sitefile import load_site

    err = Console(stderr=True)
    try:
        site_model = load_site(site)
    except SiteFileError as e:
        for problem in e.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False,
                      soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None
    text = orders_html(site_model) if format is OrdersFormat.html else orders_markdown(site_model)
    if patrol_plan is not None:
        from coverwatch.formats.patrolfile import patrol_section
        from coverwatch.formats.planfile import PlanFileError

        try:
            text = patrol_section(text, patrol_plan, html=format is OrdersFormat.html)
        except PlanFileError as e:
            for problem in e.problems:
                err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False,
                          soft_wrap=True, emoji=False)
            raise typer.Exit(2) from None
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # e.g. the tour's artifacts/
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        err.print(f"[red]error[/red] {escape(str(out))}: {escape(e.strerror or str(e))}",
                  highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None
    err.print(f"wrote {escape(str(out))}", highlight=False)
