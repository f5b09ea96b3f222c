"""The README's tour and the worked examples of docs/ run as written, and print what they
say they print, so the documents cannot drift from the code again. Examples that depend
on the date are dated relative to now (an OwnTracks ``tst`` of 2030 used to store nothing).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from serverkit import Kit, WallClock, base_settings, running_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "coverwatch"
README = (ROOT / "README.md").read_text("utf-8")
SAMPLES = ROOT / "tests" / "unit" / "samples"
GPX_SITE = """\
site: quay
origin: {lat: 51.5, lon: -0.12}
flags: {open-hours: true}
posts:
  - id: gate
    at: [0, 0]
    rules:
      - {id: cover, need: 1, within_m: 25, capability: armed, grace_s: 10, when: open-hours}
"""


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
            "PYTHONPATH": src if not path else f"{src}{os.pathsep}{path}",
            "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _workdir(tmp: Path) -> Path:
    """A directory where the README's commands run verbatim: ``examples`` is the
    repository's and ``.venv/bin/coverwatch`` this test's coverwatch."""
    (tmp / "examples").symlink_to(ROOT / "examples")
    (tmp / ".venv" / "bin").mkdir(parents=True)
    (tmp / ".venv" / "bin" / "coverwatch").symlink_to(SCRIPT)
    return tmp


def _bash(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _blocks(text: str, lang: str = "sh") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def _marked(text: str, marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.DOTALL)
    assert found, f"no block marked {marker}"
    return found.group(1)


def _readme_commands() -> list[tuple[str, int]]:
    """Every README command line but the long-running ones (serve, demo, make), with the
    exit status its comment promises (0 unless it says "exit N")."""
    out = []
    for block in _blocks(README):
        for line in block.splitlines():
            if (not line.strip() or line.startswith(("make ", "curl ")) or " serve " in line):
                continue
            status = re.search(r"exit (\d)", line)
            out.append((line.split("  #")[0].strip(), int(status.group(1)) if status else 0))
    return out


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    work = _workdir(tmp_path)
    commands = _readme_commands()
    assert len(commands) >= 9
    results = {}
    for command, status in commands:
        done = _bash(command, work)
        assert done.returncode == status, f"{command}\n{done.stdout}\n{done.stderr}"
        results[command] = done
    # What the README says of them.
    replay = next(r for c, r in results.items() if c.endswith("roving-patrol.jsonl"))
    row = re.search(r"main-gate\s*│\s*armed-cover\s*│\s*2\s*│\s*(\d+)\s*│\s*(\d+)\s*│"
                    r".*?│\s*([\d.]+)", replay.stdout)
    assert row, replay.stdout
    assert int(row.group(2)) == 10  # "ten alerted lapses"
    assert abs(float(row.group(3)) - 10) < 2  # "cover around 10 %"
    first = next(r for c, r in results.items() if c.endswith("| head -3"))
    assert set(orjson.loads(first.stdout.splitlines()[0])) == {
        "post", "rule", "start", "end", "alert_at", "min_cover"}
    assert (work / "artifacts" / "orders.html").exists()  # under a git-ignored path
    assert not (work / "orders.html").exists()
    added = next(r for c, r in results.items() if "devices add" in c)
    assert added.stdout.strip().startswith("cwd_") and "put it in the phone app" in added.stderr


def test_a_new_user_serves_the_example_and_is_told_what_next(tmp_path: Path) -> None:
    """The README's serve line on a fresh data directory: it says what it serves and what
    to do next (it used to say nothing of its own)."""
    work = _workdir(tmp_path)
    port = 0
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = next(c for b in _blocks(README) for c in b.splitlines()
                if " serve --site examples/yard/site.yaml" in c).split("  #")[0]
    proc = subprocess.Popen(["bash", "-c", f"exec {line} --port {port}"], cwd=work, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while "no devices yet" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "coverwatch serving 1 site(s): harbour-yard (Harbour Yard (fictional))" in seen
        assert f"control room: http://127.0.0.1:{port}/" in seen
        assert "no users yet: create one with" in seen
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_gpx_examples_of_interop_md_print_what_they_say(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "interop.md").read_text("utf-8")
    (tmp_path / "site.yaml").write_text(GPX_SITE)
    (tmp_path / "patrol.gpx").write_text((SAMPLES / "patrol-several-segments.gpx").read_text())
    for marker in ("gpx-replay-example", "gpx-import-example"):
        lines = _marked(text, marker).splitlines()
        i = 0
        while i < len(lines):
            command = lines[i]
            said = []
            i += 1
            while i < len(lines) and lines[i].startswith("# "):
                said.append(lines[i][2:])
                i += 1
            done = _bash(command, tmp_path)
            assert done.returncode == 0, done.stderr
            expected = "".join(s.strip() for s in said)
            if marker == "gpx-replay-example":  # one JSON line, wrapped in the document
                assert orjson.loads(done.stdout.splitlines()[0]) == orjson.loads(expected)
            else:
                assert done.stdout.strip() == expected


@pytest.fixture
def yard(tmp_path: Path) -> Iterator[Kit]:
    settings = base_settings(ROOT / "examples" / "yard" / "site.yaml", tmp_path / "data")
    with running_server(settings, WallClock()) as k:
        yield k


def test_the_owntracks_example_stores_a_fix_where_it_says(yard: Kit) -> None:
    block = _marked((ROOT / "docs" / "interop.md").read_text("utf-8"), "owntracks-example")
    body = re.search(r"-d '(.*?)'\n", block, re.DOTALL)
    assert body
    now = int(time.time())
    payload = orjson.loads(body.group(1).replace("'\"$(date +%s)\"'", str(now)))
    _, token = yard.device("alice-phone", "A7")
    import base64

    auth = base64.b64encode(f"alice:{token}".encode()).decode()
    r = yard.client.post("/owntracks", content=orjson.dumps(payload),
                         headers={"Authorization": f"Basic {auth}",
                                  "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == []
    said = re.search(r"at \(([-\d.]+) m, ([-\d.]+) m\), accuracy (\d+) m", block)
    assert said
    fixes = [e for e in yard.svc.store.events_since(0, limit=100) if e["kind"] == "fix"]
    assert len(fixes) == 1, "the documented example stored nothing"
    fix = fixes[0]
    assert (round(fix["x"], 2), round(fix["y"], 2), fix["accuracy"]) == (
        float(said.group(1)), float(said.group(2)), float(said.group(3)))
    assert (fix["officer"], fix["source"]) == ("A7", "owntracks")


def test_the_error_examples_equal_what_the_cli_and_server_print(tmp_path: Path,
                                                                yard: Kit) -> None:
    site_doc = (ROOT / "docs" / "site-file.md").read_text("utf-8")
    (tmp_path / "site.yaml").write_text(_marked(site_doc, "error-example"))
    done = _bash("coverwatch check site.yaml", tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == _marked(site_doc, "error-output").splitlines()
    server_doc = (ROOT / "docs" / "server.md").read_text("utf-8")
    documented = orjson.loads(_marked(server_doc, "problem-example"))
    caller, _ = yard.device("phone-a1", "A1")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    batch = [{"t": now, "kind": "fix", "x": i, "y": 0} for i in range(3)]
    batch.append({"t": now, "kind": "fix", "x": "abc", "y": 0})
    r = yard.client.post("/api/v1/events", json=batch, headers=caller.headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json() == documented


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every `coverwatch …` command line of README.md and docs/*.md, as words."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text("utf-8")
        inline = re.findall(r"`((?:\.venv/bin/)?coverwatch [^`\n]+)`", text)
        for block in [*_blocks(text, r"\w*"), *inline]:
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split("  #")[0].strip()
                found = re.search(r"(?:^|[\s(])(?:\.venv/bin/)?coverwatch (.*)$", line)
                if not found or line.startswith("#"):
                    continue
                try:
                    words = shlex.split(found.group(1).split("|")[0].split(")")[0])
                except ValueError:
                    words = found.group(1).split()
                out.append((f"{path.name}: {line}", words))
    return out


def test_every_documented_command_and_option_exists() -> None:
    """Each `coverwatch` command in the documents names a real command, and each of its
    --options is one that command takes (a renamed option cannot hide in a document)."""
    import typer.main

    from coverwatch.cli import app

    root = typer.main.get_command(app)
    commands = _documented_commands()
    assert len(commands) > 100
    problems = []
    for where, words in commands:
        cmd: Any = root
        options = {o for p in root.params for o in p.opts}
        i = 0
        while i < len(words) and hasattr(cmd, "get_command"):
            word = words[i]
            if word.startswith("-"):  # an option of the group (coverwatch --site X …)
                i += 2 if word in options and "=" not in word else 1
                continue
            if "/" in word or word.startswith("<") or word.isupper():  # a placeholder
                break
            sub = cmd.get_command(None, word)
            if sub is None:
                problems.append(f"{where}: no command {word!r}")
                break
            cmd, i = sub, i + 1
            options |= {o for p in cmd.params for o in p.opts}
        else:
            for word in words[i:]:
                option = word.split("=")[0]
                if option.startswith("--") and option not in options and "…" not in option:
                    problems.append(f"{where}: {' '.join(words[:i])} has no option {option}")
    assert not problems, "\n".join(problems)


def test_the_readme_phone_counts_on_the_example_yard(yard: Kit) -> None:
    """The README's OsmAnd request on the example yard is used as a fix (without an origin
    it was answered 200 with "used_as_fix": false)."""
    line = next(c for b in _blocks(README) for c in b.splitlines() if c.startswith("curl ")
                and "/osmand?" in c)
    query = re.search(r"/osmand\?([^\"]+)\"", line)
    assert query
    _, token = yard.device("phone-a1", "A1")
    params = dict(p.split("=", 1) for p in query.group(1).split("&"))
    params["id"], params["timestamp"] = token, str(int(time.time()))
    r = yard.client.get("/osmand", params=params)
    assert r.status_code == 200, r.text
    reading = r.json()["readings"][0]
    assert reading["used_as_fix"] is True, reading
    fixes = [e for e in yard.svc.store.events_since(0, limit=10) if e["kind"] == "fix"]
    assert len(fixes) == 1 and abs(fixes[0]["x"]) < 0.01 and abs(fixes[0]["y"]) < 0.01
