"""The site's plan image under a matplotlib picture (adapter): the same background the
control room draws (the site file's ``background``, :mod:`coverwatch.domain.planimage`),
placed in site metres by its control points.

A PNG is drawn as an image through the control points' affine map. An SVG is drawn as
vector shapes from a plain subset (``rect``, ``polygon``, ``polyline``, ``line``,
``circle``, ``ellipse``, ``path`` with straight and Bézier segments, ``text``, ``g``
with ``translate``/``scale``/``matrix`` transforms; fill, stroke and opacity as
attributes or ``style``): what a drawn site plan uses. Anything else in it is left
out. Map tiles are never fetched. A plan image that cannot be read leaves the picture
as it was, without a background.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import matplotlib.image
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.transforms import Affine2D, Transform

from coverwatch.domain.planimage import PlanImage

__all__ = ["draw_background"]

log = logging.getLogger("coverwatch.reports")

ALPHA = 0.7  # faded, as on the control room's plan: posts and routes stay the strongest
_SVG = "{http://www.w3.org/2000/svg}"
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_CMD = re.compile(r"([MmLlHhVvCcSsQqTtAaZz])([^MmLlHhVvCcSsQqTtAaZz]*)")
_TRANSFORM = re.compile(r"(matrix|translate|scale)\s*\(([^)]*)\)")


def draw_background(ax: Axes, background: PlanImage | None,
                    bbox: tuple[float, float, float, float]) -> bool:
    """Draw the plan image under everything on ``ax`` (whose view is ``bbox``, site
    metres); False when there is none to draw or it cannot be read."""
    if background is None or background.file is None or background.transform is None:
        return False
    t = background.transform
    site = Affine2D.from_values(t.a, t.b, t.c, t.d, t.e, t.f)
    try:
        if background.media_type == "image/png":
            image = matplotlib.image.imread(background.file)
            ax.imshow(image, extent=(0, background.width or image.shape[1],
                                     background.height or image.shape[0], 0),
                      transform=site + ax.transData, zorder=0, alpha=ALPHA,
                      interpolation="bilinear")
        else:
            _draw_svg(ax, background, site, bbox)
    except (OSError, ValueError, ET.ParseError) as e:
        log.warning("plan image %s not drawn: %s", background.file, e)
        return False
    return True


def _draw_svg(ax: Axes, bg: PlanImage, site: Transform,
              bbox: tuple[float, float, float, float]) -> None:
    assert bg.file is not None
    with open(bg.file, "rb") as f:
        data = f.read()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError("an SVG with a DOCTYPE or entities is not read")
    root = ET.fromstring(data)
    view = Affine2D()
    box = [float(v) for v in _NUM.findall(root.get("viewBox") or "")]
    if len(box) == 4 and box[2] > 0 and box[3] > 0 and bg.width and bg.height:
        view = Affine2D().translate(-box[0], -box[1]).scale(bg.width / box[2],
                                                             bg.height / box[3])
    # Site metres per SVG unit, and display points per site metre (the axes' size).
    a, b, c, d = view.get_matrix()[0, 0], 0.0, 0.0, view.get_matrix()[1, 1]
    t = bg.transform
    assert t is not None
    metres = math.sqrt(abs(t.a * t.d - t.b * t.c)) * math.sqrt(abs(a * d - b * c))
    fig = ax.get_figure(root=True)
    assert fig is not None
    inches = fig.get_size_inches()
    pos = ax.get_position()
    span = max(bbox[2] - bbox[0], 1e-9), max(bbox[3] - bbox[1], 1e-9)
    points = min(pos.width * inches[0] * 72 / span[0], pos.height * inches[1] * 72 / span[1])
    angle = math.degrees(math.atan2(t.b, t.a))
    for element, matrix, style in _walk(root, view, {}):
        _draw_element(ax, element, matrix + site, style, metres * points, angle)


def _walk(node: ET.Element, matrix: Transform, style: dict[str, str]
          ) -> Iterator[tuple[ET.Element, Transform, dict[str, str]]]:
    """Each drawable element with its transform to image pixels and inherited style."""
    for child in node:
        tag = child.tag.removeprefix(_SVG)
        mine = _transform(child.get("transform")) + matrix
        inherited = style | _style(child)
        if tag == "g":
            yield from _walk(child, mine, inherited)
        elif tag in ("rect", "polygon", "polyline", "line", "circle", "ellipse", "path",
                     "text"):
            yield child, mine, inherited


def _transform(text: str | None) -> Transform:
    out: Transform = Affine2D()
    for name, args in _TRANSFORM.findall(text or ""):
        v = [float(x) for x in _NUM.findall(args)]
        if name == "matrix" and len(v) == 6:
            step = Affine2D.from_values(*v)
        elif name == "translate" and v:
            step = Affine2D().translate(v[0], v[1] if len(v) > 1 else 0.0)
        elif name == "scale" and v:
            step = Affine2D().scale(v[0], v[1] if len(v) > 1 else v[0])
        else:
            continue
        out = step + out  # the rightmost transform applies first
    return out


def _style(el: ET.Element) -> dict[str, str]:
    keys = ("fill", "stroke", "stroke-width", "opacity", "fill-opacity", "stroke-opacity",
            "font-size", "text-anchor")
    out = {k: el.get(k, "") for k in keys if el.get(k) is not None}
    for part in (el.get("style") or "").split(";"):
        key, _, value = part.partition(":")
        if key.strip() in keys:
            out[key.strip()] = value.strip()
    return out


def _colour(value: str | None, opacity: float) -> tuple[float, float, float, float] | str:
    if value is None or value in ("none", "transparent", ""):
        return "none"
    try:
        r, g, b, a = to_rgba(value)
    except ValueError:
        return "none"  # a colour matplotlib does not know (url(#…), currentColor)
    return (r, g, b, a * opacity * ALPHA)


def _number(value: str | None, default: float = 0.0) -> float:
    found = _NUM.match((value or "").strip())
    return float(found.group()) if found else default


def _draw_element(ax: Axes, el: ET.Element, matrix: Transform, style: dict[str, str],
                  points_per_unit: float, angle: float) -> None:
    tag = el.tag.removeprefix(_SVG)
    opacity = _number(style.get("opacity"), 1.0)
    if tag == "text":
        words = "".join(el.itertext()).strip()
        colour = _colour(style.get("fill", "black"), opacity)
        if words and colour != "none":
            x, y = matrix.transform((_number(el.get("x")), _number(el.get("y"))))
            ha = {"middle": "center", "end": "right"}.get(style.get("text-anchor", ""), "left")
            ax.text(x, y, words, color=colour, ha=ha, va="baseline", rotation=angle,
                    fontsize=max(1.0, _number(style.get("font-size"), 16) * points_per_unit),
                    zorder=0.5, clip_on=True)
        return
    path = _shape(tag, el)
    if path is None:
        return
    closed = tag not in ("line", "polyline")
    fill = _colour(style.get("fill", "black"), opacity * _number(style.get("fill-opacity"), 1))
    stroke = _colour(style.get("stroke"), opacity * _number(style.get("stroke-opacity"), 1))
    if tag == "line":
        fill = "none"
    width = _number(style.get("stroke-width"), 1.0) * points_per_unit
    ax.add_patch(PathPatch(path.transformed(matrix), facecolor=fill, edgecolor=stroke,
                           linewidth=width if stroke != "none" else 0, zorder=0.3,
                           joinstyle="round", capstyle="round" if not closed else "butt"))


def _shape(tag: str, el: ET.Element) -> MplPath | None:
    n = _number
    if tag == "rect":
        x, y, w, h = n(el.get("x")), n(el.get("y")), n(el.get("width")), n(el.get("height"))
        return MplPath([(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)],
                       closed=True) if w > 0 and h > 0 else None
    if tag in ("polygon", "polyline"):
        v = [float(x) for x in _NUM.findall(el.get("points") or "")]
        pts = list(zip(v[0::2], v[1::2], strict=False))
        if len(pts) < 2:
            return None
        return MplPath([*pts, pts[0]], closed=True) if tag == "polygon" else MplPath(pts)
    if tag == "line":
        return MplPath([(n(el.get("x1")), n(el.get("y1"))), (n(el.get("x2")), n(el.get("y2")))])
    if tag in ("circle", "ellipse"):
        rx = n(el.get("r")) if tag == "circle" else n(el.get("rx"))
        ry = n(el.get("r")) if tag == "circle" else n(el.get("ry"))
        if rx <= 0 or ry <= 0:
            return None
        circle = MplPath.unit_circle()
        return circle.transformed(Affine2D().scale(rx, ry).translate(n(el.get("cx")),
                                                                      n(el.get("cy"))))
    return _path(el.get("d") or "")


def _path(d: str) -> MplPath | None:
    """An SVG path's straight and Bézier segments (arcs drawn as straight lines)."""
    verts: list[tuple[float, float]] = []
    codes: list[np.uint8] = []
    cur = start = (0.0, 0.0)
    for cmd, args in _CMD.findall(d):
        v = [float(x) for x in _NUM.findall(args)]
        rel = cmd.islower()
        op = cmd.upper()
        if op == "Z":
            if verts:
                verts.append(start)
                codes.append(MplPath.CLOSEPOLY)
                cur = start
            continue
        size = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}[op]
        for k in range(0, len(v) - size + 1, size):
            a = v[k:k + size]
            base = cur if rel else (0.0, 0.0)
            if op == "H":
                pts = [(a[0] + (cur[0] if rel else 0.0), cur[1])]
            elif op == "V":
                pts = [(cur[0], a[0] + (cur[1] if rel else 0.0))]
            elif op == "A":
                pts = [(a[5] + base[0], a[6] + base[1])]
            else:
                pts = [(a[i] + base[0], a[i + 1] + base[1]) for i in range(0, size, 2)]
            if op == "M" and k == 0:
                code = MplPath.MOVETO
                start = pts[0]
            elif op in ("C", "S"):
                code = MplPath.CURVE4
                if op == "S":  # the first control point: taken as the current point
                    pts = [cur, *pts]
            elif op in ("Q", "T"):
                code = MplPath.CURVE3
                if op == "T":
                    pts = [cur, *pts]
            else:
                code = MplPath.LINETO
            verts += pts
            codes += [code] * len(pts)
            cur = pts[-1]
    if len(verts) < 2 or codes[0] != MplPath.MOVETO:
        return None
    return MplPath(verts, codes)
