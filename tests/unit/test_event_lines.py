"""Line limits of the JSONL and CSV readers (issue 19, F4) and the scan guarding the fast path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from test_eventfiles import SITE, T0, read_all

from coverwatch.domain.events import OfficerRegistry
from coverwatch.errors import EventInputError
from coverwatch.formats._eventlines import FAST_MAX_OPENERS, json_as_orjson, scan
from coverwatch.formats.eventfiles import (
    COLUMNS,
    MAX_CSV_FIELD_CHARS,
    MAX_LINE_BYTES,
    read_events,
)

FIX = {"kind": "fix", "officer": "A1", "x": 1.0, "y": 2.0}


def fix_line(k: int, **extra: object) -> bytes:
    return orjson.dumps({"t": T0 + k, **FIX, **extra})


def jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("chunk_rows", [1_000_000, 3])  # one block, and a line past its block
def test_an_overlong_jsonl_line_is_refused_by_its_number(tmp_path: Path, chunk_rows: int) -> None:
    # Valid JSON, so before the limit it was read whole and accepted.
    long = fix_line(1, note="n" * (MAX_LINE_BYTES + 10))
    path = jsonl(tmp_path / "e.jsonl", [fix_line(0), long, fix_line(2), fix_line(3)])
    with pytest.raises(EventInputError) as err:
        read_all(path, chunk_rows=chunk_rows)
    assert err.value.line == 2
    assert "longer than 1,048,576 bytes" in str(err.value)
    reader = read_events(path, SITE, OfficerRegistry(), skip_bad=True, chunk_rows=chunk_rows)
    batches = list(reader)
    assert reader.skipped == [2]
    seqs = np.concatenate([b.fixes.seq for b in batches]).tolist()
    assert seqs == [1, 3, 4]  # the lines after it keep their numbers


def test_a_line_at_the_limit_is_read(tmp_path: Path) -> None:
    line = fix_line(1, note="")
    line = line[:-1] + b', "pad": "' + b"p" * (MAX_LINE_BYTES - len(line) - 11) + b'"}'
    assert len(line) == MAX_LINE_BYTES
    batch, _ = read_all(jsonl(tmp_path / "e.jsonl", [fix_line(0), line]))
    assert batch.fixes.seq.tolist() == [1, 2]


def csv_file(path: Path, rows: list[list[str]]) -> Path:
    head = ",".join(COLUMNS)
    body = "\n".join(",".join(r) for r in rows)
    path.write_text(f"{head}\n{body}\n")
    return path


def csv_row(k: int, officer: str = "A1") -> list[str]:
    cells = {"t": str(T0 + k), "kind": "fix", "officer": officer, "x": "1", "y": "2"}
    return [cells.get(c, "") for c in COLUMNS]


def test_an_overlong_csv_field_is_refused_by_its_line(tmp_path: Path) -> None:
    path = csv_file(tmp_path / "e.csv", [csv_row(0), csv_row(1, "A" * (MAX_CSV_FIELD_CHARS + 1)),
                                          csv_row(2)])
    with pytest.raises(EventInputError) as err:
        read_all(path)
    assert err.value.line == 3
    assert "longer than 131,072 characters" in str(err.value)
    reader = read_events(path, SITE, OfficerRegistry(), skip_bad=True)
    list(reader)
    assert reader.skipped == [3]


def test_an_overlong_csv_line_is_refused(tmp_path: Path) -> None:
    path = csv_file(tmp_path / "e.csv", [csv_row(0), csv_row(1, "A" * (MAX_LINE_BYTES + 1))])
    with pytest.raises(EventInputError) as err:
        read_all(path)
    assert err.value.line == 3 and "longer than 1,048,576 bytes" in str(err.value)


def test_an_overlong_csv_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("t," + "k" * (MAX_LINE_BYTES + 1) + "\n")
    with pytest.raises(EventInputError) as err:
        read_all(path)
    assert err.value.line == 1 and "longer than" in str(err.value)


# -- the scan ---------------------------------------------------------------------


def test_scan_counts_lines_and_finds_blank_ones() -> None:
    assert scan(b"") .lines == 0
    shape = scan(b'{"a":1}\n{"b":2}')
    assert (shape.lines, shape.plain, shape.longest, shape.few_openers) == (2, True, 7, True)
    assert not scan(b'{"a":1}\n\n{"b":2}\n').plain
    assert not scan(b' {"a":1}\n').plain
    assert not scan(b'{"a":1}\n\t{"b":2}\n').plain
    assert scan(b'{"a":1}\n{"b":2}\n').lines == 2


def test_scan_bounds_brackets_per_line_not_per_block() -> None:
    many_lists = b"".join(b'{"c":["a"]}\n' for _ in range(5_000))  # 2 per line, 5 000 extra
    assert scan(many_lists).few_openers
    deep = b'{"x":' + b"[" * FAST_MAX_OPENERS + b"]" * FAST_MAX_OPENERS + b"}\n"
    assert not scan(many_lists + deep + many_lists).few_openers
    at_limit = b'{"x":' + b"[" * (FAST_MAX_OPENERS - 1) + b"]" * (FAST_MAX_OPENERS - 1) + b"}\n"
    assert scan(many_lists + at_limit).few_openers


def test_scan_matches_a_per_line_count_on_random_blocks() -> None:
    rng = np.random.default_rng(5)
    alphabet = np.frombuffer(b'{[}]"a1 \n', np.uint8)
    for _ in range(200):
        n = int(rng.integers(0, 400))
        data = alphabet[rng.choice(len(alphabet), n, p=[.2, .2, .1, .1, .1, .1, .1, .05, .05])]
        block = data.tobytes()
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines = lines[:-1]
        shape = scan(block)
        assert shape.lines == len(lines)
        assert shape.longest == max((len(x) for x in lines), default=0)
        most = max((x.count(b"[") + x.count(b"{") for x in lines), default=0)
        assert shape.few_openers == (most <= FAST_MAX_OPENERS)
        assert shape.plain == (not any(not x or x[:1].isspace() for x in lines))


@pytest.mark.parametrize("depth", [17, 20, 40, 63])
@pytest.mark.parametrize("shape", ["list", "object"])
def test_a_fix_nested_past_the_depth_rule_is_refused_by_the_fast_path_too(
    tmp_path: Path, depth: int, shape: str
) -> None:
    # The fast path never walks an ignored field's values: a fix nested 17 to 64 deep
    # in one was accepted there and refused by the exact path (FAST_MAX_OPENERS was 64).
    inner = depth - 1  # the record itself is one level
    extra = "[" * inner + "]" * inner if shape == "list" else '{"a":' * inner + "1" + "}" * inner
    fix = f'{{"t":{T0},"kind":"fix","officer":"A1","x":1.0,"y":2.0}}'
    deep = f'{{"t":{T0 + 1},"kind":"fix","officer":"A1","x":1.0,"y":2.0,"extra":{extra}}}'
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([fix] * 50 + [deep] + [fix] * 50) + "\n")
    with pytest.raises(EventInputError, match=r"e\.jsonl:51: extra: values nest more than 16"):
        read_all(path)
    batch, _ = read_all(path, skip_bad=True)
    assert len(batch.fixes) == 100


def test_a_fix_nested_as_deep_as_the_rule_allows_takes_the_fast_path(tmp_path: Path) -> None:
    inner = FAST_MAX_OPENERS - 1
    fix = f'{{"t":{T0},"kind":"fix","officer":"A1","x":1.0,"y":2.0,"extra":'
    path = tmp_path / "e.jsonl"
    path.write_text(f'{fix}{"[" * inner}{"]" * inner}}}\n' * 10)
    assert scan(path.read_bytes()).few_openers
    batch, _ = read_all(path)
    assert len(batch.fixes) == 10


@pytest.mark.parametrize("bad", [
    b'"note":NaN', b'"note":-Infinity', b'"note":[1,Infinity]', b'"note":"\xff"',
    b'"note":"\xed\xa0\x80"', b'"note":"\xc0\x80"', b'"note":"\xf4\x90\x80\x80"',
])  # fmt: skip
@pytest.mark.parametrize("where", ["extra", "officer"])
def test_a_line_orjson_refuses_is_refused_by_its_number_with_the_fast_path_on(
    tmp_path: Path, bad: bytes, where: str
) -> None:
    # pyarrow's reader takes NaN, Infinity and bytes that are not UTF-8 where orjson
    # does not: such a fix in a field the fast path ignores was accepted, and one in
    # the officer crashed the reader (UnicodeDecodeError).
    fix = b'{"t":%d,"kind":"fix","officer":"A1","x":1.0,"y":2.0' % T0
    if where == "extra":
        line = fix + b"," + bad + b"}"
    else:
        line = fix.replace(b'"officer":"A1"', b'"officer":' + bad.split(b":", 1)[1]) + b"}"
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join([fix + b"}"] * 30 + [line] + [fix + b"}"] * 30) + b"\n")
    with pytest.raises(EventInputError, match=r"e\.jsonl:31: invalid JSON"):
        read_all(path)
    batch, _ = read_all(path, skip_bad=True)
    assert len(batch.fixes) == 60


def test_text_in_other_languages_still_takes_the_fast_path(tmp_path: Path) -> None:
    records = [{"t": T0 + i, "kind": "fix", "officer": name, "x": 1.0, "y": 2.0, "note": "Zoë"}
               for i, name in enumerate(["Łukasz", "Ægir", "José", "Nguyễn"])]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    assert json_as_orjson(bytearray(path.read_bytes()))
    batch, registry = read_all(path)
    assert list(registry.names) == ["Łukasz", "Ægir", "José", "Nguyễn"]
    assert len(batch.fixes) == 4
