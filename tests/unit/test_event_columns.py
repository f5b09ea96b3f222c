"""The compiled JSONL pass (formats/_cjsonl.c via formats/_eventcols.py) against the exact path.

The pass reads plain fix lines into columns and leaves every other line to the exact
per-line rules; whatever it reads must come out exactly as the exact path reads it
(values to the bit, line numbers, officers' order, errors and skipped lines).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from test_eventfiles import SITE, T0, exact_only, merge, read_all, same

from coverwatch.domain.events import OfficerRegistry
from coverwatch.errors import EventInputError
from coverwatch.formats import _eventcols, eventfiles
from coverwatch.formats.eventfiles import read_events

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_compiled_pass_is_built() -> None:
    if _eventcols.KERNEL is None:
        pytest.fail("formats/_cjsonl.c was not built: run `make install` (needs a C compiler)")


needs_kernel = pytest.mark.skipif(_eventcols.KERNEL is None, reason="formats/_cjsonl.c not built")

NUMBERS = [
    "0", "-0", "0.0", "-0.0", "7", "-7", "12.5", "1811.32", "0.1", "0.30000000000000004",
    "123456789012345", "1234567890123456", "12345678901234567890", "999999999999999.9",
    "0.000123", "0.0000000000000000000001", "0.00000000000000000000001", "1e3", "1.5E-2",
    "-2.5e+1", "3.141592653589793", "2.718281828459045", "100.000", "5.0",
]  # fmt: skip
HUGE = "1E400"  # orjson refuses it
TIMES = [
    str(T0), f"{T0}.5", f"{T0}.25", f'"{T0}"', '"2026-03-22T14:40:38Z"',
    '"2026-03-22T15:40:38+01:00"', '"2026-03-22T14:40:38.123456Z"', '" 2026-03-22T14:40:39Z"',
    f"{T0}e0",
]  # fmt: skip
OFFICERS = ['"A1"', '"o0001"', '"B 2"', '"A\\u0031"', '"Zo\\u00eb"', '"Zoë"', '"' + "n" * 200 + '"']
SPACES = ["", " ", "\t"]


def random_fix(rng: np.random.Generator, valid: bool) -> str:
    def pick(seq: list[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    numbers = NUMBERS if valid else [*NUMBERS, HUGE]
    fields: list[tuple[str, str]] = [("t", pick(TIMES)), ("kind", '"fix"'),
                                     ("officer", pick(OFFICERS))]
    if rng.random() < 0.8:
        fields += [("x", pick(numbers)), ("y", pick(numbers))]
    else:
        lat, lon = 51.5 + rng.random() / 100, -0.1 + rng.random() / 100
        fields += [("lat", f"{lat:.7f}"), ("lon", f"{lon:.7f}")]
    if rng.random() < 0.7:
        fields.append(("accuracy_m", pick(["5.0", "0", "-0.0", "12.25", "3", "null"])))
    if rng.random() < 0.05:
        fields.append(("note", '"x"'))  # a key the pass does not know
    if rng.random() < 0.03:
        fields.append(("x" if fields[3][0] == "x" else "lat", "1.5"))  # a key twice: the last wins
    order = rng.permutation(len(fields))
    sp = pick(SPACES)
    body = ",".join(f'{sp}"{fields[i][0]}"{sp}:{sp}{fields[i][1]}{sp}' for i in order)
    return "{" + body + "}" + pick(["", "", "", " ", "\r"])


CONTROL = [
    {"t": T0, "kind": "duty", "officer": "C9", "on": True, "capabilities": ["armed"]},
    {"t": T0, "kind": "duty", "officer": "A1", "on": False},
    {"t": T0 + 1, "kind": "flag", "flag": "open-hours", "on": True},
    {"t": T0 + 2, "kind": "gate", "post": "main-gate", "open": False},
]


def random_lines(rng: np.random.Generator, n: int, valid: bool = True) -> list[str]:
    out = []
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(orjson.dumps(CONTROL[int(rng.integers(len(CONTROL)))]).decode())
        else:
            out.append(random_fix(rng, valid))
    return out


def outcome(path: Path, exact: bool, **kw: Any) -> tuple[str, Any]:
    try:
        batch, registry = exact_only(path, **kw) if exact else read_all(path, **kw)
    except EventInputError as err:
        return "error", str(err)
    return "ok", (batch, list(registry.names))


def agree(path: Path, **kw: Any) -> None:
    mine, theirs = outcome(path, False, **kw), outcome(path, True, **kw)
    assert mine[0] == theirs[0], (mine, theirs)
    if mine[0] == "error":
        assert mine[1] == theirs[1]
        return
    (a, names_a), (b, names_b) = mine[1], theirs[1]
    assert same(a, b)
    assert np.array_equal(a.fixes.growth, b.fixes.growth)
    assert names_a == names_b
    # Values to the bit, but for the sign of zero: pyarrow's path, which takes the blocks
    # after one the pass declines, reads the integer -0 as -0.0 where the exact path has
    # 0.0 (as on main; no distance differs). The pass's own zeros: test_numbers_... below.
    for name in ("x", "y", "accuracy"):
        assert np.array_equal((getattr(a.fixes, name) + 0.0).view(np.int64),
                              (getattr(b.fixes, name) + 0.0).view(np.int64))


@needs_kernel
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("chunk_rows", [1_000_000, 5])
def test_random_lines_read_as_the_exact_path_reads_them(
    tmp_path: Path, seed: int, chunk_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "e.jsonl"
    lines = random_lines(rng, 300, valid=seed % 3 > 0)
    path.write_text("\n".join(lines) + ("\n" if seed % 2 else ""))
    agree(path, chunk_rows=chunk_rows)
    agree(path, chunk_rows=chunk_rows, skip_bad=True)


FIX_HEAD = '{"t":@T,"kind":"fix","officer":"A1"'
BAD = [
    FIX_HEAD + ',"x":NaN,"y":2}', FIX_HEAD + ',"x":1}', FIX_HEAD + ',"x":1,"y":2,"lat":1,"lon":1}',
    FIX_HEAD + ',"lat":91,"lon":0}', FIX_HEAD + ',"x":1,"y":2,"accuracy_m":-1}',
    FIX_HEAD + ',"x":"1","y":2}', FIX_HEAD + ',"x":01,"y":2}', FIX_HEAD + ',"x":1.,"y":2}',
    FIX_HEAD + ',"x":1,"y":2}}', FIX_HEAD + ',"x":1,"y":2,}', FIX_HEAD + ',"x":1e999,"y":2}',
    FIX_HEAD + ',"x":1,"y":2} x', FIX_HEAD + ',"x":1,"y":2', "[@T]",
    FIX_HEAD + ',"x":1,"y":2,"extra":' + "[" * 20 + "]" * 20 + "}",
    '{"t":@T,"kind":"fix","officer":"","x":1,"y":2}',
    '{"t":@T,"kind":"fix","officer":"' + "n" * 201 + '","x":1,"y":2}',
    '{"t":@T,"kind":"fix","officer":"A\x01","x":1,"y":2}',
    '{"t":@T,"kind":"fixes","officer":"A1","x":1,"y":2}',
    '{"t":@T00000,"kind":"fix","officer":"A1","x":1,"y":2}',
]


@needs_kernel
@pytest.mark.parametrize("bad", BAD)
def test_a_bad_line_among_plain_ones_is_named_as_the_exact_path_names_it(
    tmp_path: Path, bad: str
) -> None:
    lines = [f'{{"t":{T0 + i},"kind":"fix","officer":"A{i % 3}","x":1.5,"y":2.25}}'
             for i in range(40)]
    lines.insert(23, bad.replace("@T", str(T0 + 23)))
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for chunk_rows in (1_000_000, 3):
        agree(path, chunk_rows=chunk_rows)
        agree(path, chunk_rows=chunk_rows, skip_bad=True)
    with pytest.raises(EventInputError, match=r"e\.jsonl:24: "):
        read_all(path)


@needs_kernel
def test_plain_lines_never_reach_the_other_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(random_lines(rng, 500)).encode() + b"\n")
    exact, names = exact_only(path, chunk_rows=20)

    def declined(*args: object, **kw: object) -> None:
        raise AssertionError("the compiled pass declined a block of valid lines")

    monkeypatch.setattr(eventfiles.EventReader, "_jsonl_block", declined)
    monkeypatch.setattr(eventfiles, "scan", declined)
    reader = read_events(path, SITE, OfficerRegistry(), chunk_rows=20)
    batches = list(reader)
    assert reader.lines_read == 500
    assert same(merge(batches), exact)
    assert list(reader.registry.names) == list(names.names)


@needs_kernel
def test_numbers_are_the_values_float_gives() -> None:
    rng = np.random.default_rng(3)
    texts = list(NUMBERS)
    for _ in range(3000):
        digits = int(rng.integers(1, 16))
        m = int(rng.integers(0, 10**digits))
        point = int(rng.integers(0, digits + 1))
        s = str(m).rjust(point + 1, "0")
        text = s if point == 0 else s[:-point] + "." + s[-point:]
        texts.append(("-" if rng.random() < 0.5 else "") + text)
    block = "".join(f'{{"t":{T0},"kind":"fix","officer":"A","x":{s},"y":0}}\n' for s in texts)
    got = _eventcols.jsonl_block(bytearray(block.encode()), 1, _rules(), OfficerRegistry())
    assert got is not None
    want = np.array([float(orjson.loads(s)) for s in texts])
    assert np.array_equal(got[1].fixes.x.view(np.int64), want.view(np.int64))


def _rules() -> Any:
    from coverwatch.domain.records import RecordRules

    return RecordRules.of(SITE)


@needs_kernel
def test_a_jsonl_replay_of_plain_lines_loads_no_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("".join(f'{{"t":{T0 + i},"kind":"fix","officer":"A","x":1,"y":2}}\n'
                            for i in range(100)))
    code = (
        "import sys\n"
        "from coverwatch.domain.events import OfficerRegistry\n"
        "from coverwatch.domain.site import Post, Rule, Site\n"
        "from coverwatch.formats.eventfiles import read_events\n"
        "site = Site('s', 's', (Post('p', 'p', (Rule('r', 1, 10.0, 10.0),), at=(0.0, 0.0)),))\n"
        f"n = sum(len(b) for b in read_events({str(path)!r}, site, OfficerRegistry()))\n"
        "assert n == 100, n\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyarrow'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC)})
    assert out.stdout.strip() == "[]"


@needs_kernel
def test_mostly_distinct_times_read_alike(tmp_path: Path) -> None:
    # Past DISTINCT_TIMES in a block, the pass hands the rest of the file to pyarrow's path.
    n = _eventcols.DISTINCT_TIMES + 500
    path = tmp_path / "e.jsonl"
    path.write_text("".join(f'{{"t":{T0 + i / 7:.6f},"kind":"fix","officer":"A","x":1,"y":2}}\n'
                            for i in range(n)))
    agree(path)
    assert len(read_all(path)[0].fixes) == n


def test_a_file_truncated_while_it_is_read_ends_the_read_not_the_process(
        tmp_path: Path) -> None:
    # A mapped file cut short under the reader killed the process (SIGBUS) on the next page.
    path = tmp_path / "e.jsonl"
    path.write_text("".join(f'{{"t":{T0 + i},"kind":"fix","officer":"A{i % 50}","x":1,'
                            f'"y":2,"accuracy_m":5}}\n' for i in range(60_000)))
    code = (
        "import os\n"
        "from coverwatch.domain.events import OfficerRegistry\n"
        "from coverwatch.domain.site import Post, Rule, Site\n"
        "from coverwatch.errors import EventInputError\n"
        "from coverwatch.formats.eventfiles import read_events\n"
        "site = Site('s', 's', (Post('p', 'p', (Rule('r', 1, 10.0, 10.0),), at=(0.0, 0.0)),))\n"
        f"batches = iter(read_events({str(path)!r}, site, OfficerRegistry(), chunk_rows=100))\n"
        "n = len(next(batches))\n"
        f"os.truncate({str(path)!r}, 0)\n"
        "try:\n"
        "    n += sum(len(b) for b in batches)\n"
        "except EventInputError as e:\n"
        "    print('refused:', e)\n"
        "print('read', n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(SRC)})
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "read" in out.stdout
