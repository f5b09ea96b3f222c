"""Site-check benchmark: does `coverwatch check` grow linearly in the number of posts?

Writes two synthetic, FICTIONAL site files (2 000 and 20 000 point posts, each
with orders and one cover rule, a few gates and walkways), times what `coverwatch
check` does in-process (load and validate, walkway checks, wording lint) on each,
and prints the seconds and the ratio. Linear growth is a ratio near 10;
quadratic would be near 100.

    .venv/bin/python bench/check.py                # 2 000 vs 20 000 posts
    .venv/bin/python bench/check.py --small 500 --large 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coverwatch.formats.orderdocs import lint_problems
from coverwatch.formats.sitefile import load_site_document
from coverwatch.reports.plans import check_walkways


def site_text(posts: int) -> str:
    lines = ["site: bench-yard", "name: Bench Yard (fictional)", "timezone: UTC",
             "flags: {open-hours: true}", "posts:"]
    for i in range(posts):
        x, y = (i % 200) * 10, (i // 200) * 10
        lines += [
            f"  - id: post-{i}",
            f"    name: Post {i}",
            f"    at: [{x}, {y}]",
            *(["    gate: true"] if i % 50 == 0 else []),
            "    orders: >",
            f"      Stay within 20 metres of post {i} and report to the control room",
            "      at the start and end of each shift.",
            "    rules:",
            "      - id: cover",
            "        need: 1",
            "        within_m: 20",
            "        grace_s: 60",
            "        when: open-hours",
        ]
    lines += ["walkways:"]
    for j in range(max(1, posts // 200)):
        lines += [f"  - id: row-{j}", f"    points: [[0, {j * 10}], [1990, {j * 10}]]"]
    return "\n".join(lines) + "\n"


def check_seconds(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    doc = load_site_document(path)
    check_walkways(doc.site)
    lint_problems(doc)
    return time.perf_counter() - start, len(doc.site.posts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for n in (args.small, args.large):
            path = Path(tmp) / f"site-{n}.yaml"
            path.write_text(site_text(n), encoding="utf-8")
            seconds, posts = check_seconds(path)
            assert posts == n
            results.append(seconds)
            print(f"{n:>7} posts: {seconds:7.2f} s ({path.stat().st_size / 1e6:.1f} MB)")
    ratio = results[1] / results[0]
    scale = args.large / args.small
    print(f"ratio {ratio:.1f} for {scale:g}x the posts (linear: ~{scale:g}, "
          f"quadratic: ~{scale * scale:g})")


if __name__ == "__main__":
    main()
