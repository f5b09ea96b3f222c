"""Evidence pack size over an old window (issue 23): a 1-hour window of fixes, then
``--later`` audit entries recorded after it (a week of a site's activity, say), exported.
The audit segment runs from the window to the chain's last entry, so it carries every
later entry; what grows with them is the pack's ``audit.jsonl`` and, unless later entries
are proved by their links to the head's ``audit_last``, one inclusion proof each.

    PYTHONPATH=src .venv/bin/python bench/pack_size.py [--later 5000]

Run it with each tree's ``src`` to compare (sizes do not depend on load).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from pathlib import Path

from coverwatch.domain.time import US_PER_S, format_time
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.pack import export_pack
from coverwatch.storage import open_store
from coverwatch.storage.versions import SiteVersion, save_versions

SITE = """\
site: bench-pack
origin: {lat: 51.5, lon: -0.12}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25}
"""
H = 3600 * US_PER_S


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--later", type=int, default=5000)
    args = ap.parse_args()
    t0 = 1_700_000_000 * US_PER_S
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, Path(tmp) / "data")
        versions = [SiteVersion(0, SITE)]
        save_versions(store, versions)
        store.append_audit("ann", "user.created", "user:a", {}, at=format_time(t0 - H))
        rows = [{"kind": "duty", "t_us": t0, "officer": f"O{i}", "on": True, "source": "b"}
                for i in range(10)]
        rows += [{"kind": "fix", "t_us": t0 + s * US_PER_S, "officer": f"O{i}",
                  "x": 1.0, "y": 2.0, "accuracy": 5.0, "source": "b"}
                 for s in range(0, 3600, 30) for i in range(10)]
        store.append_events(rows)
        for n in range(10):
            store.append_audit("ann", "orders.changed", f"post:p{n}", {"n": n},
                               at=format_time(t0 + n * 60 * US_PER_S))
        for n in range(args.later):
            store.append_audit("ann", "device.seen", f"device:d{n % 50}", {"n": n},
                               at=format_time(t0 + 2 * H + n * US_PER_S))
        key = load_signing_key(Path(tmp) / "data" / "keys" / "audit.key")
        start = time.process_time()
        data = export_pack(store, versions, key, site="bench-pack", since=t0, until=t0 + H)
        cpu = time.process_time() - start
        store.close()
    z = zipfile.ZipFile(io.BytesIO(data))
    sizes = {i.filename: (i.file_size, i.compress_size) for i in z.infolist()}
    print(f"1 h window, {args.later} audit entries after it: pack {len(data) / 1e6:.2f} MB "
          f"(zip); proofs.json {sizes['proofs.json'][0] / 1e6:.2f} MB raw, "
          f"{sizes['proofs.json'][1] / 1e6:.2f} MB zipped; audit.jsonl "
          f"{sizes['audit.jsonl'][0] / 1e6:.2f} MB raw; export CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
