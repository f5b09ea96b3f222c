"""Enrolling a phone without typing its token: a link and QR code that configure
Traccar Client in one scan, and the OsmAnd online-tracking URL template.

Traccar Client applies a scanned ``http(s)`` link as its configuration: the
link's origin and path become the server URL, and its query parameters set the
device identifier (``id``, our ``cwd_…`` token), ``interval``, ``distance``,
``accuracy`` and ``stop_detection``. Its own defaults (300 s, 75 m, stop
detection on) would leave an officer who stands still at a post stale, so the
link sets interval 5 s, distance 0, stop detection off and high accuracy.

The token stays high-entropy and is stored hashed, so the link can be made
only when the token is known: at enrolment or after a rotation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

__all__ = ["Enrolment", "enrolment", "qr_svg", "write_qr"]

# OsmAnd's placeholders: {0} lat, {1} lon, {2} time (ms), {3} hdop (its accuracy, metres),
# {4} altitude, {5} speed.
_OSMAND_FIELDS = "lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What an officer's phone needs: the server URL, the identifier, the links."""

    device: str
    officer: str | None
    server_url: str
    token: str
    traccar_link: str
    osmand_url: str

    def as_dict(self) -> dict[str, str | None]:
        return {"device": self.device, "officer": self.officer, "server_url": self.server_url,
                "device_identifier": self.token, "traccar_link": self.traccar_link,
                "osmand_url": self.osmand_url, "qr_svg": qr_svg(self.traccar_link)}


def enrolment(public_url: str, device: str, officer: str | None, token: str, *,
              interval_s: int = 5) -> Enrolment:
    """The configuration for one device. ``public_url`` is how phones reach the server."""
    base = public_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the public URL must start with http:// or https://, got {public_url!r}")
    server_url = f"{base}/osmand"
    query = urlencode({"id": token, "interval": interval_s, "distance": 0,
                       "stop_detection": "false", "accuracy": "high", "buffer": "true"})
    return Enrolment(device, officer, server_url, token, f"{server_url}?{query}",
                     f"{server_url}?id={token}&{_OSMAND_FIELDS}")


def qr_svg(link: str) -> str:
    """The link as a QR code (SVG text, error correction M)."""
    import segno

    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="svg", scale=4, border=4)
    return out.getvalue().decode("utf-8")


def write_qr(link: str, path: Path) -> None:
    """Write the link's QR code to ``path``: SVG, PNG or anything segno knows by suffix."""
    import segno

    segno.make(link, error="m").save(str(path), scale=6, border=4)
