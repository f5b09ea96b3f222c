"""The site file's ``background`` section: a site-plan image (PNG or SVG, a path
relative to the site file) placed by two or three control points, and an
optional XYZ map-tile URL drawn under it where the site has an ``origin``.

The image is checked here, once, as the server will serve it: it must lie in the
site file's folder (or below it), be a PNG or an SVG by its content as well as its
name, and give its size in pixels. An SVG with a DOCTYPE is refused (no entities
to expand). Nothing is fetched: the tile URL is only checked for its form.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from typing import Any

from yaml.nodes import Node

from coverwatch.domain.planimage import ControlPoint, PlanImage, fit_control_points
from coverwatch.formats._siteyaml import _child, _item, _NodeChecker

__all__ = ["MAX_PLAN_IMAGE_BYTES", "_PlanImageReader"]

_BACKGROUND_KEYS = {"image": False, "points": False, "tiles": False, "attribution": False}
_POINT_KEYS = {"pixel": True, "site": True}

MAX_PLAN_IMAGE_BYTES = 8 * 1024 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
_TILE_URL = re.compile(r"https?://[^\s{}]+(\{[zxy]\}[^\s{}]*)+")
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px)?\s*")


class _ImageProblem(Exception):
    """Why an image file cannot be used."""


def _png_size(head: bytes) -> tuple[float, float]:
    if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise _ImageProblem("is not a PNG image (no PNG signature)")
    width, height = struct.unpack(">II", head[16:24])
    return float(width), float(height)


def _svg_length(value: str | None) -> float | None:
    if value is None:
        return None
    m = _LENGTH.fullmatch(value)
    return float(m.group(1)) if m else None


def _svg_size(data: bytes) -> tuple[float, float]:
    import xml.etree.ElementTree as ET  # only for an SVG plan: not on every site file's load

    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _ImageProblem("is an SVG with a DOCTYPE or entities; remove them")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise _ImageProblem(f"is not well-formed SVG ({e})") from None
    if root.tag not in ("{http://www.w3.org/2000/svg}svg", "svg"):
        raise _ImageProblem("is not an SVG image (its root element is not <svg>)")
    width = _svg_length(root.get("width"))
    height = _svg_length(root.get("height"))
    box = (root.get("viewBox") or "").replace(",", " ").split()
    if (width is None or height is None) and len(box) == 4:
        with contextlib.suppress(ValueError):
            width, height = float(box[2]), float(box[3])
    if not width or not height or width <= 0 or height <= 0:
        raise _ImageProblem("gives no size: set width and height (in px) or a viewBox "
                            "on its <svg> element")
    return width, height


def _read_image(path: str, media_type: str) -> tuple[float, float]:
    try:
        if os.path.isdir(path):
            raise _ImageProblem("is a folder, not a file")
        size = os.path.getsize(path)
        if size > MAX_PLAN_IMAGE_BYTES:
            raise _ImageProblem(f"is {size} bytes; at most {MAX_PLAN_IMAGE_BYTES} are served")
        with open(path, "rb") as f:
            data = f.read(32 if media_type == "image/png" else MAX_PLAN_IMAGE_BYTES)
    except FileNotFoundError:
        raise _ImageProblem("no such file") from None
    except OSError as e:
        raise _ImageProblem(f"cannot be read: {e.strerror or e}") from None
    return _png_size(data) if media_type == "image/png" else _svg_size(data)


class _PlanImageReader(_NodeChecker):
    """Reads the ``background`` section into a :class:`PlanImage`."""

    def background(self, node: Node, has_origin: bool) -> PlanImage | None:
        fields = self.mapping(node, "background", _BACKGROUND_KEYS)
        if fields is None:
            return None
        if "image" not in fields and "points" in fields:
            self.problem(fields["points"][0], "background.points",
                         "control points place an 'image'; give one")
            return None
        if "image" not in fields and "tiles" not in fields:
            self.problem(node, "background", "give an 'image' (with 'points') or 'tiles', or both")
            return None
        out: dict[str, Any] = {}
        if "image" in fields:
            out |= self._image(node, fields)
        if "tiles" in fields:
            out["tiles"] = self._tiles(fields["tiles"][1], has_origin)
        if "attribution" in fields:
            out["attribution"] = self.string(fields["attribution"][1],
                                             "background.attribution", empty_ok=False)
        return PlanImage(**out)

    def _image(self, node: Node, fields: dict[str, tuple[Node, Node]]) -> dict[str, Any]:
        image_node = fields["image"][1]
        image = self.string(image_node, "background.image", empty_ok=False)
        if "points" not in fields:
            self.problem(node, "background.points",
                         "missing required key 'points' (two or three control points "
                         "placing the image)")
            return {}
        points = self._points(fields["points"][1])
        if image is None:
            return {}
        media_type = _TYPES.get(os.path.splitext(image)[1].lower())
        if media_type is None:
            self.problem(image_node, "background.image",
                         f"{image!r}: a plan image is a .png or .svg file")
            return {}
        parts = image.replace("\\", "/").split("/")
        if os.path.isabs(image) or image.startswith(("/", "\\")) or ".." in parts:
            self.problem(image_node, "background.image",
                         f"{image!r}: give a path relative to the site file, inside its "
                         "folder (no '..', not absolute)")
            return {}
        out: dict[str, Any] = {"image": image, "media_type": media_type}
        size: tuple[float, float] | None = None
        if not self.path.startswith("<"):  # read from text: no folder to look in
            file = os.path.join(os.path.dirname(os.path.abspath(self.path)), *parts)
            try:
                size = _read_image(file, media_type)
            except _ImageProblem as e:
                self.problem(image_node, "background.image", f"{image!r}: {e}")
                return {}
            out |= {"file": file, "width": size[0], "height": size[1]}
        if points is None:
            return {}
        points_node = fields["points"][1]
        if size is not None:
            for index, p in enumerate(points):
                u, v = p.pixel
                if not (0 <= u <= size[0] and 0 <= v <= size[1]):
                    self.problem(points_node.value[index], _item("background.points", index),
                                 f"pixel [{u:g}, {v:g}] is outside the image "
                                 f"({size[0]:g} x {size[1]:g} px; [0, 0] is its top left)")
                    return {}
        try:
            out["transform"] = fit_control_points(points)
        except ValueError as e:
            self.problem(points_node, "background.points", f"{e}: they place no image")
            return {}
        out["points"] = points
        return out

    def _points(self, node: Node) -> tuple[ControlPoint, ...] | None:
        items = self.sequence(node, "background.points")
        if items is None:
            return None
        if len(items) not in (2, 3):
            self.problem(node, "background.points",
                         f"give two or three control points, got {len(items)}")
            return None
        out: list[ControlPoint] = []
        for index, item in enumerate(items):
            field_path = _item("background.points", index)
            fields = self.mapping(item, field_path, _POINT_KEYS)
            if fields is None or "pixel" not in fields or "site" not in fields:
                continue
            pixel = self.point(fields["pixel"][1], _child(field_path, "pixel"))
            site = self.point(fields["site"][1], _child(field_path, "site"))
            if pixel is not None and site is not None:
                out.append(ControlPoint(pixel, site))
        return tuple(out) if len(out) == len(items) else None

    def _tiles(self, node: Node, has_origin: bool) -> str | None:
        url = self.string(node, "background.tiles", empty_ok=False)
        if url is None:
            return None
        if not _TILE_URL.fullmatch(url) or not all(f"{{{k}}}" in url for k in "zxy"):
            self.problem(node, "background.tiles",
                         f"{url[:80]!r}: give an http(s) URL with {{z}}, {{x}} and {{y}}, "
                         "e.g. 'https://tiles.example.org/{z}/{x}/{y}.png'")
            return None
        if not has_origin:
            self.problem(node, "background.tiles",
                         "map tiles need the site's 'origin' (lat, lon of site metre [0, 0])")
            return None
        return url
