"""Post orders as documents, and orders lint warnings located in the site file.

An adapter around :mod:`coverwatch.domain.orders` and
:mod:`coverwatch.domain.lint`: :func:`orders_markdown` and
:func:`orders_html` lay out every post's generated orders (the HTML is a
standalone printable page with a signature block); :func:`lint_problems`
turns wording warnings into :class:`~coverwatch.errors.Problem` objects that
point at the words' own line and column in the site file.
"""

from __future__ import annotations

import html
import re

from coverwatch.domain.lint import OrdersWarning, lint_orders
from coverwatch.domain.orders import PostOrders, site_orders, site_orders_version
from coverwatch.domain.site import Site
from coverwatch.errors import Problem
from coverwatch.formats.sitefile import SiteDocument

__all__ = ["lint_problems", "orders_html", "orders_markdown"]

_INTRO = ("These orders are generated from the site's cover rules: the numbered rules are "
          "exactly what coverwatch checks, and supervisors are alerted when they are not met.")
_SIGN = "Approved by ____________________  rank ____________  date ____________"


def orders_markdown(site: Site) -> str:
    """Every post's orders as one Markdown document."""
    orders = site_orders(site)
    lines = [f"# Post orders: {site.name}", "",
             f"Site `{site.id}` · orders set version `{site_orders_version(orders)}`", "",
             _INTRO, ""]
    for post in orders:
        lines += [f"## {post.post_name}", "",
                  f"Post `{post.post_id}` · orders version `{post.version}`", "",
                  "### Cover rules", ""]
        for number, (text, rule_id) in enumerate(_numbered(post), 1):
            tag = f" (rule `{rule_id}`)" if rule_id else ""
            lines.append(f"{number}. {text}{tag}")
        lines.append("")
        if post.general:
            lines += ["### Every officer at this post", ""]
            lines += [f"- {text}" for text in post.general]
            lines.append("")
        if post.free_text:
            lines += ["### Written orders", "", post.free_text, ""]
    lines += ["---", "", _SIGN, ""]
    return "\n".join(lines)


def _numbered(post: PostOrders) -> list[tuple[str, str | None]]:
    ids: list[str | None] = list(post.rule_ids) or [None]
    return list(zip(post.rules, ids, strict=True))


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 11pt/1.45 "Helvetica Neue", Arial, "Liberation Sans", sans-serif; color: #111;
       background: #e9eaec; margin: 0; }
.page { background: #fff; max-width: 190mm; margin: 12mm auto; padding: 14mm 16mm;
        box-shadow: 0 1px 4px rgba(0,0,0,.25); }
header { border-bottom: 2px solid #111; padding-bottom: 8pt; margin-bottom: 12pt; }
h1 { font-size: 20pt; margin: 0 0 2pt; }
.site { font-size: 13pt; margin: 0 0 6pt; }
.meta { color: #444; font-size: 9.5pt; margin: 0; }
code, .version { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 9pt; }
.intro { margin: 8pt 0 0; font-size: 10pt; }
section.post { border: 1px solid #999; border-radius: 3pt; padding: 9pt 12pt 4pt;
               margin: 0 0 12pt; break-inside: avoid; page-break-inside: avoid; }
.post-head { display: flex; justify-content: space-between; align-items: baseline; gap: 12pt;
             border-bottom: 1px solid #ccc; padding-bottom: 4pt; margin-bottom: 6pt; }
h2 { font-size: 14pt; margin: 0; }
.post-head .meta { text-align: right; white-space: nowrap; }
h3 { font-size: 9pt; text-transform: uppercase; letter-spacing: .06em; color: #333;
     margin: 8pt 0 3pt; }
ol.rules { margin: 0; padding-left: 18pt; }
ol.rules li { margin: 0 0 5pt; }
.rule-id { color: #555; font-size: 8.5pt; white-space: nowrap; }
ul.general { margin: 0; padding-left: 16pt; }
ul.general li { margin: 0 0 2pt; }
.written { white-space: pre-line; border-left: 3px solid #111; padding: 2pt 0 2pt 8pt;
           margin: 0 0 6pt; }
.sign { margin-top: 18pt; border-top: 2px solid #111; padding-top: 10pt;
        break-inside: avoid; page-break-inside: avoid; }
.sign p { margin: 0 0 4pt; font-size: 10pt; }
.sign .fields { display: flex; gap: 14pt; margin-top: 22pt; }
.sign .field { flex: 1; }
.sign .field.wide { flex: 2; }
.sign .line { border-bottom: 1px solid #111; height: 22pt; }
.sign .label { font-size: 8.5pt; color: #333; margin-top: 2pt; }
@page { size: A4; margin: 14mm 14mm 16mm; }
@media print {
  body { background: #fff; }
  .page { box-shadow: none; margin: 0; padding: 0; max-width: none; }
  a { color: inherit; text-decoration: none; }
}
"""


def orders_html(site: Site) -> str:
    """Every post's orders as a standalone, printable HTML page (inline CSS)."""
    esc = html.escape
    orders = site_orders(site)
    version = site_orders_version(orders)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Post orders: {esc(site.name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        '<main class="page">',
        "<header>",
        "<h1>Post orders</h1>",
        f'<p class="site">{esc(site.name)}</p>',
        f'<p class="meta">Site <code>{esc(site.id)}</code> · orders set version '
        f'<span class="version">{version}</span> · {len(orders)} post(s)</p>',
        f'<p class="intro">{esc(_INTRO)}</p>',
        "</header>",
    ]
    for post in orders:
        parts += [
            f'<section class="post" id="post-{esc(post.post_id)}">',
            '<div class="post-head">',
            f"<h2>{esc(post.post_name)}</h2>",
            f'<p class="meta">Post <code>{esc(post.post_id)}</code><br>'
            f'Orders version <span class="version">{post.version}</span></p>',
            "</div>",
            "<h3>Cover rules</h3>",
            '<ol class="rules">',
        ]
        for text, rule_id in _numbered(post):
            tag = f' <span class="rule-id">(rule {esc(rule_id)})</span>' if rule_id else ""
            parts.append(f"<li>{esc(text)}{tag}</li>")
        parts.append("</ol>")
        if post.general:
            parts += ["<h3>Every officer at this post</h3>", '<ul class="general">']
            parts += [f"<li>{esc(text)}</li>" for text in post.general]
            parts.append("</ul>")
        if post.free_text:
            parts += ["<h3>Written orders</h3>",
                      f'<p class="written">{esc(post.free_text)}</p>']
        parts.append("</section>")
    parts += [
        '<section class="sign">',
        f"<p>I approve these orders for {esc(site.name)}, orders set version "
        f'<span class="version">{version}</span>.</p>',
        '<div class="fields">',
        '<div class="field wide"><div class="line"></div><div class="label">Approved by '
        "(name and signature)</div></div>",
        '<div class="field"><div class="line"></div><div class="label">Rank</div></div>',
        '<div class="field"><div class="line"></div><div class="label">Date</div></div>',
        "</div>",
        "</section>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def lint_problems(doc: SiteDocument) -> list[Problem]:
    """The wording lint's warnings for a loaded site file, located in its source.

    Each warning points at the first character of the offending words in the
    file (inside a block scalar too); if they cannot be found there, at the
    start of the post's ``orders`` value.
    """
    out: list[Problem] = []
    for warning in lint_orders(doc.site, doc.lint):
        line, column = _locate(doc, warning)
        out.append(Problem(doc.path, line, column, warning.field, warning.message))
    return out


def _locate(doc: SiteDocument, warning: OrdersWarning) -> tuple[int | None, int | None]:
    start = doc.locations.get(warning.field)
    if start is None:
        return None, None
    source_lines = doc.source.splitlines(keepends=True)
    offset = sum(len(text) for text in source_lines[: start[0] - 1]) + start[1] - 1
    # The same words may occur earlier in the text: find the same occurrence in the file.
    words = warning.quote.split()
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)")
    orders = doc.site.posts[warning.post_index].orders
    nth = sum(1 for m in pattern.finditer(orders) if m.start() < warning.start)
    for count, match in enumerate(pattern.finditer(doc.source, offset)):
        if count == nth:
            before = doc.source[: match.start()]
            line = before.count("\n") + 1
            return line, match.start() - (before.rfind("\n") + 1) + 1
    return start
