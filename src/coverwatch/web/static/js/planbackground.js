// The plan's background (site file `background`): the site-plan image placed by its
// control points, and map tiles under it where the site names a tile URL (opt-in:
// nothing is fetched from outside unless the site file says so).

import { svg, sitePath } from "./common.js";

const R = 6371008.8;  // the server's earth radius (domain/geometry.py)
const MAX_TILES = 64;

export class Background {
  constructor(group, bg) {
    this.g = group;
    this.tiles = bg?.tiles ?? null;
    this.tileEls = new Map();
    this.gTiles = svg("g", { class: "bg-tiles" });
    this.g.append(this.gTiles);
    const im = bg?.image;
    if (im) {
      // pixel (u, v) -> site (x, y); the plan's y is -north, hence the signs.
      const [a, b, c, d, e, f] = im.transform;
      this.g.append(svg("image", {
        class: "bg-image", href: sitePath(im.href), x: 0, y: 0, width: im.width, height: im.height,
        preserveAspectRatio: "none", transform: `matrix(${a},${-b},${c},${-d},${e},${-f})`,
        "aria-hidden": "true",
      }));
    }
  }

  // Tiles for the view (site metres, y flipped) at about one tile pixel per screen pixel.
  update(view, unit) {
    if (!this.tiles) return;
    const [lat0, lon0] = this.tiles.origin;
    const cos0 = Math.cos(lat0 * Math.PI / 180);
    const toLatLon = (x, y) => [lat0 + (y / R) * 180 / Math.PI, lon0 + (x / (R * cos0)) * 180 / Math.PI];
    const toSite = (lat, lon) => [(lon - lon0) * Math.PI / 180 * R * cos0, (lat - lat0) * Math.PI / 180 * R];
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(156543.03 * cos0 / Math.max(unit, 1e-6)))));
    const n = 2 ** z;
    const tx = (lon) => Math.floor((lon + 180) / 360 * n);
    const ty = (lat) => {
      const r = lat * Math.PI / 180;
      return Math.floor((1 - Math.asinh(Math.tan(r)) / Math.PI) / 2 * n);
    };
    const lon2 = (x) => x / n * 360 - 180;
    const lat2 = (y) => Math.atan(Math.sinh(Math.PI * (1 - 2 * y / n))) * 180 / Math.PI;
    const [latN, lonW] = toLatLon(view.x, -view.y);
    const [latS, lonE] = toLatLon(view.x + view.w, -(view.y + view.h));
    const x0 = tx(lonW), x1 = tx(lonE), y0 = ty(latN), y1 = ty(latS);
    const want = new Set();
    for (let x = Math.max(0, x0); x <= Math.min(n - 1, x1); x++) {
      for (let y = Math.max(0, y0); y <= Math.min(n - 1, y1); y++) {
        if (want.size >= MAX_TILES) break;
        const key = `${z}/${x}/${y}`;
        want.add(key);
        if (this.tileEls.has(key)) continue;
        const [sx0, sy0] = toSite(lat2(y), lon2(x));
        const [sx1, sy1] = toSite(lat2(y + 1), lon2(x + 1));
        const href = this.tiles.url.replace("{z}", z).replace("{x}", x).replace("{y}", y);
        const img = svg("image", { class: "bg-tile", href, x: sx0, y: -sy0, width: sx1 - sx0, height: sy0 - sy1,
          preserveAspectRatio: "none", "aria-hidden": "true" });
        this.tileEls.set(key, img);
        this.gTiles.append(img);
      }
    }
    for (const [key, img] of this.tileEls) if (!want.has(key)) { img.remove(); this.tileEls.delete(key); }
  }
}

// The tiles' attribution, as the tile server asks (shown on the plan's corner).
export function attribution(bg) {
  return bg?.tiles?.attribution ?? null;
}
