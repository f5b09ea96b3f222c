"""Plain command-line values skip pydantic (cli/lightparams.py) and convert exactly as
typer's own conversion does: same value, or the same refusal, on every parameter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.core
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer.main import get_command

from coverwatch.cli import app
from coverwatch.cli import lightparams as lp

__all__: list[str] = []

SAMPLES: list[Any] = [
    "3", "-2", "+7", "007", "1_000", " 4", "4 ", "", "1.5", ".5", "5.", "-1e3", "1e400",
    "nan", "inf", "x", "abc/def", "a/", "./a", "a//b", "/", "-", "~/x", "true", "no",
    True, False, 3, 2.5, ("a", "b"), ("1", "2"), ("x",), (),
]  # fmt: skip


def _params(cmd: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if hasattr(cmd, "list_commands"):
        out = []
        for name in cmd.list_commands(None):
            out += _params(cmd.get_command(None, name), f"{path} {name}")
        return out
    return [
        (f"{path} {p.name}", cmd, p)
        for p in cmd.params
        if isinstance(p, typer.core._TyperParameter)
    ]


def _convert(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "ok", runtime._coerce_value(value, param=param, ctx=ctx)
    except BadParameter as exc:
        return "refused", exc.format_message()
    except Exception as exc:  # compared, not raised
        return "raised", f"{type(exc).__name__}: {exc}"


def test_every_parameter_converts_as_typer_does(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("")
    (tmp_path / "abc").mkdir()
    params = _params(get_command(app))
    light = 0
    for where, cmd, param in params:
        desc = param.type_descriptor
        ours = lp._build(desc)
        theirs = lp._typers(desc)
        if isinstance(ours, lp._LightParam):
            light += 1
        ctx = Context(cmd)
        for value in SAMPLES:
            got, want = _convert(ours, value, param, ctx), _convert(theirs, value, param, ctx)
            assert repr(got) == repr(want), (where, value)
            assert type(got[1]) is type(want[1]), (where, value)
    assert light >= 50, "the plain conversion should take most parameters"


def test_light_value_declines_what_it_cannot_vouch_for() -> None:
    assert lp.light_value(int, "1_000") is lp._NO
    assert lp.light_value(float, " 1.5") is lp._NO
    assert lp.light_value(Path, "a/") is lp._NO
    assert lp.light_value(int, "12") == 12
    assert lp.light_value(list[str], ("a", "b")) == ["a", "b"]


def test_a_replay_imports_no_pydantic(tmp_path: Path) -> None:
    site_file = Path(__file__).parent / "sites" / "valid.yaml"
    events = tmp_path / "empty.jsonl"
    events.write_text("")
    code = (
        "import sys; from coverwatch.cli import main\n"
        "try: main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "replay",
            str(site_file),
            str(events),
            "--budget",
            "10",
            "--disorder-window-s",
            "2.5",
            "--json",
            str(tmp_path / "out.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]", out


@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_a_refused_value_gets_typers_message(value: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from coverwatch.cli import main; main()",
            "replay",
            "s.yaml",
            "e.jsonl",
            "--budget",
            value,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "Input should be a valid integer" in out.stderr
