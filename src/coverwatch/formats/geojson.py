"""Sites as GeoJSON, for drawing them in QGIS or geojson.io, and back.

Import (:func:`site_from_geojson`): a FeatureCollection in lon/lat (RFC 7946)
becomes a site file. Each feature's flat properties say what it is:
``kind`` (``post``, ``walkway`` or ``barrier``; by default Point and Polygon
are posts and LineString a walkway), ``id``, ``name``, ``rules`` (a
JSON-encoded string, as QGIS keeps it, or a nested array), ``gate``,
``orders``, ``one_way``; ``summary`` (written by the export), ``fid`` (added
by QGIS) and geojson.io's styling (``stroke``, ``fill``, ``marker-color``, ...)
are ignored; the id may also be the Feature's own ``id`` (a number, as
geojson.io writes, becomes its text). An old-style ``crs`` member is read:
CRS84 is lon/lat, EPSG:4326 by its URN is lat/lon (swapped on import), and
any other system is an error. Anything else is an
error naming the feature and property. A post is a Point (``at``) or a Polygon
(``area``; a MultiPolygon of one part is accepted because QGIS saves polygons
that way). A post area has no holes and is one polygon: both are errors that
say so. Positions are
projected to site metres around the origin (the collection's
``coverwatch.origin``, else the one given, else the centre of the features'
bounding box), rounded to 1 mm.

Export (:func:`site_to_geojson`) writes the reverse, with the origin and the
site's other settings in the collection's ``coverwatch`` member, so that an
export imported again gives the same site (geometry within 1 mm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
import yaml

from coverwatch.domain.geometry import EARTH_RADIUS_M
from coverwatch.domain.site import LatLon, Rule, Site
from coverwatch.errors import Problem, SiteFileError

__all__ = [
    "MAX_GEOJSON_BYTES",
    "degree_findings",
    "lonlat_to_xy",
    "site_from_geojson",
    "site_to_geojson",
    "xy_to_lonlat",
]

MAX_GEOJSON_BYTES = 64 << 20
# Written by the export, added by QGIS, or geojson.io's styling (simplestyle): ignored.
_IGNORED = {"summary", "fid", "marker-color", "marker-size", "marker-symbol", "stroke",
            "stroke-opacity", "stroke-width", "fill", "fill-opacity"}
_KNOWN = {"kind", "id", "name", "rules", "gate", "orders", "one_way"} | _IGNORED
_FOR_KIND = {"post": {"id", "name", "rules", "gate", "orders"},
             "walkway": {"id", "one_way"}, "barrier": {"id"}}
# checkpoints and tours ride along as settings (site metres): an export never drops them.
_SITE_KEYS = ("site", "name", "origin", "timezone", "stale_after_s", "flags", "escalation",
              "speeds_mps", "lint", "checkpoints", "tours")


def lonlat_to_xy(lon: float, lat: float, origin: LatLon) -> tuple[float, float]:
    """Site metres of a lon/lat, by the same projection as fixes (domain.geometry)."""
    lat0 = math.radians(origin.lat)
    x = EARTH_RADIUS_M * (math.radians(lon) - math.radians(origin.lon)) * math.cos(lat0)
    y = EARTH_RADIUS_M * (math.radians(lat) - lat0)
    return x, y


def xy_to_lonlat(x: float, y: float, origin: LatLon) -> tuple[float, float]:
    """The inverse of :func:`lonlat_to_xy`."""
    lat0 = math.radians(origin.lat)
    lon = math.degrees(math.radians(origin.lon) + x / (EARTH_RADIUS_M * math.cos(lat0)))
    lat = math.degrees(lat0 + y / EARTH_RADIUS_M)
    return lon, lat


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _position(value: Any, field: str) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        shown = orjson.dumps(value).decode()[:60]
        raise _Bad(field, f"expected a position [lon, lat], got {shown}")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90 and math.isfinite(lon + lat)):
        raise _Bad(field, f"[{lon:g}, {lat:g}] is not a lon/lat in degrees (GeoJSON is WGS-84 "
                          "lon/lat; export a projected layer as EPSG:4326 first)")
    return lon, lat


def _line(value: Any, field: str, minimum: int) -> list[tuple[float, float]]:
    if not isinstance(value, list) or len(value) < minimum:
        raise _Bad(field, f"expected at least {minimum} positions")
    return [_position(p, f"{field}[{i}]") for i, p in enumerate(value)]


def _polygon(coords: Any, field: str) -> list[tuple[float, float]]:
    if not isinstance(coords, list) or not coords:
        raise _Bad(field, "expected a list of rings")
    if len(coords) > 1:
        raise _Bad(field, f"the polygon has {len(coords) - 1} hole(s): a post's area has no "
                          "holes; draw the outer ring only, or split the area into posts")
    ring = _line(coords[0], f"{field}[0]", 4)
    if ring[0] == ring[-1]:
        ring = ring[:-1]
    return ring


def _geometry(feature: Mapping[str, Any], field: str) -> tuple[str, Any]:
    geom = feature.get("geometry")
    if not isinstance(geom, Mapping):
        raise _Bad(f"{field}.geometry", "missing geometry")
    kind, coords = geom.get("type"), geom.get("coordinates")
    where = f"{field}.geometry.coordinates"
    if kind == "Point":
        return "point", _position(coords, where)
    if kind == "LineString":
        return "line", _line(coords, where, 2)
    if kind == "Polygon":
        return "polygon", _polygon(coords, where)
    if kind in ("MultiPolygon", "MultiLineString", "MultiPoint"):
        if not isinstance(coords, list) or len(coords) != 1:
            n = len(coords) if isinstance(coords, list) else 0
            raise _Bad(f"{field}.geometry", f"a {kind} of {n} parts: one feature is one post, "
                                            "walkway or barrier; split it into features")
        single = {"MultiPolygon": "Polygon", "MultiLineString": "LineString",
                  "MultiPoint": "Point"}[kind]
        return _geometry({"geometry": {"type": single, "coordinates": coords[0]}}, field)
    raise _Bad(f"{field}.geometry.type", f"unsupported geometry type {kind!r}")


def _rules(value: Any, field: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            raise _Bad(field, f"not valid JSON: {e}") from None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise _Bad(field, "expected a list of rule objects (or that list as a JSON string)")
    return value


def _mm(p: tuple[float, float], origin: LatLon) -> list[float]:
    x, y = lonlat_to_xy(p[0], p[1], origin)
    return [round(x, 3) + 0.0, round(y, 3) + 0.0]


def _bbox_centre(features: list[Any]) -> LatLon:
    pts: list[tuple[float, float]] = []
    stack: list[Any] = [f["geometry"].get("coordinates") for f in features
                        if isinstance(f, Mapping) and isinstance(f.get("geometry"), Mapping)]
    while stack:  # iterative: the JSON may nest deeper than Python's recursion limit
        c = stack.pop()
        if not isinstance(c, list):
            continue
        if len(c) >= 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                               for v in c):
            pts.append((float(c[0]), float(c[1])))
        else:
            stack.extend(c)
    if not pts:
        return LatLon(0.0, 0.0)
    lons, lats = [p[0] for p in pts], [p[1] for p in pts]
    return LatLon(round((min(lats) + max(lats)) / 2, 6), round((min(lons) + max(lons)) / 2, 6))


# Old-style (GeoJSON 2008) "crs" names: CRS84 is lon/lat (RFC 7946's own order); the
# EPSG definition of 4326 is latitude first, as GDAL writes it with that URN.
_LON_LAT_CRS = ("urn:ogc:def:crs:ogc:1.3:crs84", "urn:ogc:def:crs:ogc::crs84", "crs84",
                "ogc:crs84")
_LAT_LON_CRS = ("urn:ogc:def:crs:epsg::4326", "urn:ogc:def:crs:epsg:6.6:4326", "epsg:4326",
                "http://www.opengis.net/def/crs/epsg/0/4326")


def _lat_lon_order(crs: Any, fail: Any) -> bool:
    """True if the collection's ``crs`` says its positions are (lat, lon)."""
    if crs is None:
        return False
    props = crs.get("properties") if isinstance(crs, Mapping) else None
    name = props.get("name") if isinstance(props, Mapping) else None
    if not isinstance(name, str):
        raise fail("crs", "expected {\"type\": \"name\", \"properties\": {\"name\": ...}}")
    key = name.strip().lower()
    if key in _LON_LAT_CRS:
        return False
    if key in _LAT_LON_CRS:
        return True
    raise fail("crs.properties.name", f"coordinate system {name!r} is not WGS 84 degrees; "
                                      "save the layer as EPSG:4326 / CRS84 (lon/lat)")


def _swapped(feature: Any) -> Any:
    """The feature with every position's first two numbers swapped (lat, lon -> lon, lat)."""
    def swap(c: Any) -> Any:
        if isinstance(c, list) and len(c) >= 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in c):
            return [c[1], c[0], *c[2:]]
        return [swap(v) for v in c] if isinstance(c, list) else c

    if not isinstance(feature, Mapping) or not isinstance(feature.get("geometry"), Mapping):
        return feature
    geometry = dict(feature["geometry"])
    if "coordinates" in geometry:
        geometry["coordinates"] = swap(geometry["coordinates"])
    return {**feature, "geometry": geometry}


def site_from_geojson(
    text: str | bytes, path: str, *, origin: LatLon | None = None, site_id: str | None = None,
) -> tuple[str, Site]:
    """A site file (YAML text, validated) from GeoJSON; raises :class:`SiteFileError`."""
    from coverwatch.formats.sitefile import load_site_text_document

    def fail(field: str | None, message: str) -> SiteFileError:
        return SiteFileError([Problem(path, None, None, field, message)])

    if len(text) > MAX_GEOJSON_BYTES:
        raise fail(None, f"larger than {MAX_GEOJSON_BYTES} bytes")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise fail(None, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise fail("type", "expected a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list):
        raise fail("features", "expected a list of features")
    if _lat_lon_order(data.get("crs"), fail):
        features = [_swapped(f) for f in features]
    meta = data.get("coverwatch") or {}
    if not isinstance(meta, dict):
        raise fail("coverwatch", "expected an object (the site's settings)")
    for key in meta:
        if key not in _SITE_KEYS:
            raise fail(f"coverwatch.{key}", f"unknown site setting {key!r}; known: "
                                            f"{', '.join(_SITE_KEYS)}")
    doc: dict[str, Any] = {k: meta[k] for k in _SITE_KEYS if k in meta}
    if origin is None and isinstance(meta.get("origin"), dict):
        try:
            origin = LatLon(float(meta["origin"]["lat"]), float(meta["origin"]["lon"]))
        except (KeyError, TypeError, ValueError):
            raise fail("coverwatch.origin", "expected {lat, lon} in degrees") from None
    origin = origin or _bbox_centre(features)
    doc["site"] = site_id or doc.get("site") or "site"
    doc["origin"] = {"lat": origin.lat, "lon": origin.lon}
    posts: list[dict[str, Any]] = []
    walkways: list[dict[str, Any]] = []
    barriers: list[dict[str, Any]] = []
    feature_of: dict[str, list[int]] = {"posts": [], "walkways": [], "barriers": []}
    problems: list[Problem] = []
    for index, feature in enumerate(features):
        field = f"features[{index}]"
        try:
            if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
                raise _Bad(field, "expected a Feature")
            props = feature.get("properties") or {}
            if not isinstance(props, Mapping):
                raise _Bad(f"{field}.properties", "expected an object")
            shape, coords = _geometry(feature, field)
            kind = props.get("kind") or {"point": "post", "polygon": "post",
                                         "line": "walkway"}[shape]
            if not isinstance(kind, str) or kind not in _FOR_KIND:
                raise _Bad(f"{field}.properties.kind",
                           f"unknown kind {kind!r}; expected post, walkway or barrier")
            for key in props:
                if key not in _KNOWN:
                    known = sorted(_KNOWN - _IGNORED)
                    raise _Bad(f"{field}.properties.{key}", f"unknown property {key!r}; "
                               f"known: {', '.join(known)}")
                if key not in _FOR_KIND[kind] | {"kind"} | _IGNORED \
                        and props[key] is not None:
                    raise _Bad(f"{field}.properties.{key}", f"a {kind} has no {key!r}")
            # The id may also be the Feature's own "id" member (geojson.io, some QGIS exports).
            ident = props.get("id", feature.get("id"))
            if "id" not in props and isinstance(ident, int) and not isinstance(ident, bool):
                ident = str(ident)  # RFC 7946 allows a number here; geojson.io numbers 0, 1, ...
            item: dict[str, Any] = {"id": ident}
            if kind == "post":
                if shape == "line":
                    raise _Bad(f"{field}.geometry", "a post is a Point or a Polygon")
                if props.get("name") is not None:
                    item["name"] = props["name"]
                if shape == "point":
                    item["at"] = _mm(coords, origin)
                else:
                    item["area"] = [_mm(p, origin) for p in coords]
                if props.get("gate") is not None:
                    item["gate"] = props["gate"]
                if props.get("orders") is not None:
                    item["orders"] = props["orders"]
                item["rules"] = _rules(props.get("rules", []),
                                       f"{field}.properties.rules")
                posts.append(item)
                feature_of["posts"].append(index)
            elif kind == "walkway":
                if shape != "line":
                    raise _Bad(f"{field}.geometry", "a walkway is a LineString")
                item["points"] = [_mm(p, origin) for p in coords]
                if props.get("one_way") is not None:
                    item["one_way"] = props["one_way"]
                walkways.append(item)
                feature_of["walkways"].append(index)
            else:
                if shape == "point":
                    item["at"] = _mm(coords, origin)
                elif shape == "line":
                    item["points"] = [_mm(p, origin) for p in coords]
                else:
                    raise _Bad(f"{field}.geometry", "a barrier is a Point or a LineString")
                barriers.append(item)
                feature_of["barriers"].append(index)
        except _Bad as bad:
            problems.append(Problem(path, None, None, bad.field, bad.message))
    if problems:
        raise SiteFileError(problems)
    doc["posts"] = posts
    if walkways:
        doc["walkways"] = walkways
    if barriers:
        doc["barriers"] = barriers
    if "flags" not in doc:  # flags that rules name start off, as a drawn site cannot say
        named = {r.get("when") for p in posts for r in p["rules"] if isinstance(r.get("when"), str)}
        if named:
            doc["flags"] = dict.fromkeys(sorted(named), False)
    order = [*_SITE_KEYS[:6], "posts", "walkways", "barriers", *_SITE_KEYS[6:]]
    doc = {k: doc[k] for k in order if k in doc}
    source = "# Generated by `coverwatch site import-geojson` from " + path.replace("\n", " ") \
        + "\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    try:
        site = load_site_text_document(source, path).site
    except SiteFileError as e:
        raise SiteFileError([_back(p, path, feature_of) for p in e.problems]) from None
    return source, site


class _Dumper(yaml.SafeDumper):
    """Points and lines of points in flow style: ``at: [0.0, 20.5]``."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(isinstance(v, int | float) for v in data)
    points = all(isinstance(v, list) and all(isinstance(c, int | float) for c in v) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                     flow_style=bool(data) and (flat or points))


_Dumper.add_representer(list, _represent_list)


def _back(problem: Problem, path: str, feature_of: dict[str, list[int]]) -> Problem:
    """A problem of the generated site file, told in the GeoJSON's terms."""
    field = problem.field or ""
    section, bracket, rest = field.partition("[")
    if bracket and section in feature_of:
        head, _, tail = rest.partition("]")
        tail = tail.lstrip(".")
        where = f"features[{feature_of[section][int(head)]}]"
        if tail.split(".")[0].split("[")[0] in ("at", "area", "points"):
            field = f"{where}.geometry"
        else:
            field = f"{where}.properties.{tail or 'id'}"
    elif field:
        field = f"coverwatch.{field}"
    return Problem(path, None, None, field or None, problem.message)


def _summary(rule: Rule) -> str:
    words = [f"{rule.id}: {rule.need}"]
    if rule.capability:
        words.append(rule.capability)
    if math.isfinite(rule.within_m):
        words.append(f"within {rule.within_m:g} m")
    if rule.reach_s is not None:
        words.append(f"reach in {rule.reach_s:g} s")
    if rule.when:
        words.append(f"while {rule.when}")
    if rule.when_gate_open:
        words.append("while the gate is open")
    if rule.grace_s:
        words.append(f"(grace {rule.grace_s:g} s)")
    return " ".join(words)


def site_to_geojson(source: str, site: Site, *, origin: LatLon | None = None) -> dict[str, Any]:
    """The site (its YAML ``source`` and the validated ``site``) as a GeoJSON FeatureCollection."""
    origin = origin or site.origin
    if origin is None:
        raise ValueError("the site has no origin: give one (--origin LAT,LON) to place it on "
                         "a map")
    raw = yaml.safe_load(source)

    def ll(p: Any) -> list[float]:
        return list(xy_to_lonlat(float(p[0]), float(p[1]), origin))

    features: list[dict[str, Any]] = []
    for post, raw_post in zip(site.posts, raw["posts"], strict=True):
        props: dict[str, Any] = {"kind": "post", "id": post.id, "name": post.name,
                                 "rules": orjson.dumps(raw_post.get("rules", [])).decode(),
                                 "gate": post.gate, "orders": post.orders,
                                 "summary": "; ".join(_summary(r) for r in post.rules)}
        if post.at is not None:
            geometry: dict[str, Any] = {"type": "Point", "coordinates": ll(post.at)}
        else:
            assert post.area is not None
            ring = [ll(p) for p in post.area]
            geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    for w in site.walkways:
        features.append({"type": "Feature",
                         "properties": {"kind": "walkway", "id": w.id, "one_way": w.one_way},
                         "geometry": {"type": "LineString",
                                      "coordinates": [ll(p) for p in w.points]}})
    for b in site.barriers:
        geometry = ({"type": "Point", "coordinates": ll(b.points[0])} if len(b.points) == 1
                    else {"type": "LineString", "coordinates": [ll(p) for p in b.points]})
        features.append({"type": "Feature", "properties": {"kind": "barrier", "id": b.id},
                         "geometry": geometry})
    meta = {k: raw[k] for k in _SITE_KEYS if k in raw}
    meta["origin"] = {"lat": origin.lat, "lon": origin.lon}
    return {"type": "FeatureCollection", "name": site.name, "coverwatch": meta,
            "features": features}


def degree_findings(site: Site) -> list[str]:
    """Posts whose ``at`` or ``area`` look like lon/lat degrees pasted as site metres."""
    out: list[str] = []
    for i, post in enumerate(site.posts):
        points = [post.at] if post.at is not None else list(post.area or ())
        field = f"posts[{i}].{'at' if post.at is not None else 'area'}"
        if site.origin is not None:
            o = site.origin
            near = all(abs(x - o.lon) <= 1 and abs(y - o.lat) <= 1 for x, y in points) or all(
                abs(x - o.lat) <= 1 and abs(y - o.lon) <= 1 for x, y in points)
            if near:
                out.append(f"{field} (post {post.id}): every coordinate lies within 1 of the "
                           f"origin's latitude/longitude ({o.lat:g}, {o.lon:g}): these look "
                           "like degrees, but positions are site metres east/north of the "
                           "origin (draw the site as GeoJSON and use `coverwatch site "
                           "import-geojson`)")
        elif post.area is not None:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            across = math.hypot(max(xs) - min(xs), max(ys) - min(ys))
            if across < 1.0 and all(abs(x) <= 180 and abs(y) <= 90 for x, y in points):
                out.append(f"{field} (post {post.id}): the area is {across:.2g} m across and "
                           "every coordinate is within ±180/±90: these look like lon/lat "
                           "degrees, but positions are site metres (give the site an origin "
                           "and convert, e.g. with `coverwatch site import-geojson`)")
    return out
