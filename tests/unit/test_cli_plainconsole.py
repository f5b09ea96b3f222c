"""cli/plainconsole.py against Rich: when it says Rich would write plainly, it writes what
Rich writes, at Rich's width; where Rich could do otherwise it declines."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from coverwatch.cli import plainconsole
from coverwatch.cli.plainconsole import plain_console


class _Pipe(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return False


class _Tty(_Pipe):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> _Pipe:
    for name in plainconsole._RICH_ENV:
        monkeypatch.delenv(name, raising=False)
    out = _Pipe()
    monkeypatch.setattr(sys, "stdout", out)
    return out


def _no_terminal(fd: int) -> os.terminal_size:
    raise OSError("not a terminal")


@pytest.mark.parametrize("sizes", [{}, {0: 132}, {2: 57}, {1: 0}])
def test_width_is_richs(pipe: _Pipe, monkeypatch: pytest.MonkeyPatch,
                        sizes: dict[int, int]) -> None:
    def size(fd: int) -> os.terminal_size:
        if fd in sizes:
            return os.terminal_size((sizes[fd], 24))
        raise OSError("not a terminal")

    monkeypatch.setattr(os, "get_terminal_size", size)
    plain = plain_console()
    assert plain is not None
    rich = Console()
    assert not rich.is_terminal and rich.color_system is None
    assert plain.width == rich.width


@pytest.mark.parametrize("name", ["FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "TTY_INTERACTIVE"])
def test_declines_where_rich_reads_the_environment(pipe: _Pipe, monkeypatch: pytest.MonkeyPatch,
                                                   name: str) -> None:
    monkeypatch.setenv(name, "1")
    assert plain_console() is None


def test_declines_a_terminal_or_a_stream_not_utf8(pipe: _Pipe,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert plain_console() is not None
    monkeypatch.setattr(sys, "stdout", _Tty())
    assert plain_console() is None
    latin = _Pipe()
    latin.encoding = "latin-1"  # type: ignore[misc]
    monkeypatch.setattr(sys, "stdout", latin)
    assert plain_console() is None


_PIECES = ["p0018", "cover", "/", ": ", ":", " ", "  ", "lapse", "2026-03-22T06:00:00Z",
           ":smile:", ":100:", "[red]", "[", "]", "x" * 30, "é", "\t", "-", "still open", ","]


def test_lines_are_richs(pipe: _Pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "get_terminal_size", _no_terminal)
    rng = random.Random(25)
    written = 0
    for _ in range(1_500):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 12)))
        for markup, soft_wrap in ((None, False), (f"[red]ALERT[/red] {text}", True)):
            shown = text if markup is None else f"ALERT {text}"
            plain = plain_console()
            assert plain is not None
            pipe.seek(0)
            pipe.truncate()
            if not plain.line(shown, soft_wrap=soft_wrap):
                assert pipe.getvalue() == ""
                continue
            mine = pipe.getvalue()
            pipe.seek(0)
            pipe.truncate()
            Console().print(shown if markup is None else markup, highlight=markup is None,
                            soft_wrap=soft_wrap)
            assert mine == pipe.getvalue(), repr(shown)
            written += 1
    assert written > 500  # most lines are plain: the comparison is not empty


def _replay(args: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    code = (
        "import sys; from coverwatch.cli import main\n"
        "try: main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m in ('rich.console', 'numpy.ma')),"
        " file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, "replay", *args], capture_output=True,
                          text=True, timeout=120, check=True, env=env)
    return done.stdout, done.stderr.strip().splitlines()[-1:]


def _grid(tmp_path: Path) -> list[str]:
    """A FICTIONAL site of 12 posts nobody covers (12 alerted lapses) and its events."""
    posts = "".join(f"  - id: p{i:02d}\n    at: [{100 * i}, 0]\n    rules:\n      - id: cover\n"
                    "        need: 1\n        within_m: 10\n        release_m: 15\n"
                    "        grace_s: 0\n" for i in range(12))
    site = tmp_path / "site.yaml"
    site.write_text(f"site: grid\nname: Grid (fictional)\nposts:\n{posts}")
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        f'{{"t":{1_774_159_200 + s},"kind":"fix","officer":"o1","x":-500,"y":0,'
        '"accuracy_m":5}\n' for s in range(0, 120, 10)))
    return [str(site), str(events)]


def test_a_replay_off_a_terminal_writes_richs_text_without_rich(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in plainconsole._RICH_ENV}
    yard = Path(__file__).parents[2] / "examples" / "yard"
    for args, rich_needed in (
        (_grid(tmp_path), False),
        # The yard's table is wider than 80 columns: Rich lays it out, as on main.
        ([str(yard / "site.yaml"), str(yard / "roving-patrol.jsonl")], True),
    ):
        plain, loaded = _replay(args, env)
        assert loaded == (["['rich.console']"] if rich_needed else ["[]"])  # nor numpy.ma
        assert "ALERT " in plain and "more alerted lapses" in plain, plain
        # TTY_COMPATIBLE=0: Rich finds no terminal as before, and renders it all itself.
        by_rich, loaded = _replay(args, {**env, "TTY_COMPATIBLE": "0"})
        assert loaded == ["['rich.console']"]
        assert plain == by_rich
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert _replay([str(yard / "site.yaml"), str(empty)], env)[0] == "no events to replay\n"
