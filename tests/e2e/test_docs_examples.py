"""The README's tour and the worked examples of docs/ run as written, and print what they
say they print, so the documents cannot drift from the code again. Examples that depend
on the date are dated relative to now (an OwnTracks ``tst`` of 2030 used to store nothing).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clifork import fork_server

from serverkit import FakeClock, Kit, WallClock, base_settings, running_server

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


# The `coverwatch` the documents' commands find: a fork server's client (clifork.py), set by
# the fixture below; each command is still a process of its own, started in milliseconds.
_FAST: list[Path] = []


def _bin() -> Path:
    return _FAST[-1] if _FAST else SCRIPT.parent


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
            "PYTHONPATH": src if not path else f"{src}{os.pathsep}{path}",
            "PATH": f"{_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="session", autouse=True)
def fast_cli() -> Iterator[Path]:
    """One process that has imported coverwatch, forking each documented command."""
    with fork_server(_env()) as bin_dir:
        _FAST.append(bin_dir)
        try:
            yield bin_dir
        finally:
            _FAST.remove(bin_dir)


def _workdir(tmp: Path) -> Path:
    """A directory where the README's commands run verbatim: ``examples`` is the
    repository's and ``.venv/bin/coverwatch`` this test's coverwatch."""
    (tmp / "examples").symlink_to(ROOT / "examples")
    (tmp / ".venv" / "bin").mkdir(parents=True)
    (tmp / ".venv" / "bin" / "coverwatch").symlink_to(_bin() / "coverwatch")
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
    # The console script itself, as a reader starts it (the other tests fork it: clifork.py).
    proc = subprocess.Popen(["bash", "-c", f"exec {line} --port {port}"], cwd=work,
                            env={**_env(), "COVERWATCH_TEST_REAL": "1"},
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


def test_the_readme_phone_counts_on_the_example_yard(tmp_path: Path) -> None:
    """The README's OsmAnd request on the example yard is used as a fix (without an origin
    it was answered 200 with "used_as_fix": false), and on time, also when it reaches the
    server a while after the shell ran it: with `timestamp=$(date +%s)` (whole seconds, so
    up to 1 s old when sent) it was late once the request took more than the rest of the
    live engine's 2 s lateness, as on a busy machine (answered "late": 1)."""
    settings = base_settings(ROOT / "examples" / "yard" / "site.yaml", tmp_path / "data")
    clock = FakeClock(int(time.time()) * 1_000_000 + 900_000)  # the shell runs it at .9 s
    with running_server(settings, clock) as yard:
        line = next(c for b in _blocks(README) for c in b.splitlines() if c.startswith("curl ")
                    and "/osmand?" in c)
        query = re.search(r"/osmand\?([^\"]+)\"", line)
        assert query
        _, token = yard.device("phone-a1", "A1")
        shell = query.group(1).replace("$(date +%s)", str(clock() // 1_000_000))
        params = dict(p.split("=", 1) for p in shell.split("&"))
        assert params["id"] == "$TOKEN"
        params["id"] = token
        yard.advance(1.5)  # the request on its way (a busy machine), the ticker meanwhile
        r = yard.client.get("/osmand", params=params)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["accepted"] == 1 and answer["late"] == 0, answer
        assert answer["readings"][0]["used_as_fix"] is True, answer
        fixes = [e for e in yard.svc.store.events_since(0, limit=10) if e["kind"] == "fix"]
        assert len(fixes) == 1 and abs(fixes[0]["x"]) < 0.01 and abs(fixes[0]["y"]) < 0.01


# -- every command the documents show, run ----------------------------------------------------
#
# Each `coverwatch` line of README.md and docs/*.md (code blocks and inline) is run, in document
# order, in a directory laid out as a reader's would be (the example sites, a GPX track, the
# site files the documents name). A line with placeholders (SITE, URL, […], …, a|b) is run as
# FILLED says, with the demo's fictional sites; a line that only names a command (`coverwatch
# check`) counts as run when another run's words contain its words; the few that cannot run in
# a test are in NOT_RUN with the reason. A new line that fits none of these fails the test.

PASSWORD = "a long enough password"
PG, NATS, PORT = "{pg}", "{nats}", "{port}"
# A no-op that has the test start `coverwatch serve --site site.yaml` in the reader's directory
# first (on {port}): some commands read what a server has stored (the site version in force).
SERVED = f": a server runs on port {PORT}"
# Placeholders filled in with the demo's fictional sites (one line may become several runs).
FILLED: dict[str, list[str]] = {
    # README (alice's contact a closed local port: no message leaves the machine)
    ".venv/bin/coverwatch users set alice --notify 'ntfys://ntfy.sh/choose-a-topic'": [
        ".venv/bin/coverwatch users set alice --notify 'json://127.0.0.1:9/alice'"],
    ".venv/bin/coverwatch serve --site site.yaml --db postgresql://user@host/db --mqtt "
    "mqtt://127.0.0.1:1883": [f".venv/bin/coverwatch serve --site site.yaml --db {PG} "
                              "--mqtt mqtt://127.0.0.1:1883"],
    "coverwatch serve --bus … --role gateway|worker|all": [
        f"coverwatch serve --site site.yaml --db {PG} --bus {NATS} --role {role}"
        for role in ("gateway", "worker", "all")],
    "coverwatch db upgrade --db URL": [f"coverwatch db upgrade --db {PG}"],
    "coverwatch check --strict": ["coverwatch check --strict examples/yard/site.yaml"],
    "coverwatch help [COMMAND]": ["coverwatch help", "coverwatch help check"],
    "coverwatch devices enrol NAME --officer X --public-url URL --qr phone.svg": [
        "coverwatch devices enrol phone-b2 --officer B2 --public-url https://cover.example.org "
        "--qr phone.svg"],
    "coverwatch audit verify --anchors FILE": [
        "coverwatch audit anchor --out anchors.jsonl", "coverwatch audit verify --anchors "
        "anchors.jsonl"],
    "coverwatch evidence export --since T --until T --out pack.zip": [
        SERVED, "coverwatch evidence export --since 2020-01-01T00:00:00Z "
        "--until 2099-01-01T00:00:00Z --out pack.zip"],
    "coverwatch records daily|time-in-area": [
        "coverwatch records daily --date 2026-03-22 --out day.pdf",
        "coverwatch records daily --date 2026-03-22 --out day.csv",
        "coverwatch records time-in-area --since 2026-03-22T00:00:00Z "
        "--until 2026-03-23T00:00:00Z --out area.csv"],
    "coverwatch roster import": ["coverwatch roster import roster.csv --site site.yaml"],
    "coverwatch qualifications import": ["coverwatch qualifications import quals.csv"],
    "coverwatch events import": [
        "coverwatch events import patrol.gpx --site site.yaml --data-dir data "
        "--capability armed"],
    "coverwatch site import-geojson": [
        "coverwatch site import-geojson examples/quay/site.geojson --out quay.yaml"],
    "coverwatch export": [
        "coverwatch export --site site.yaml --since 2020-01-01T00:00:00Z "
        "--until 2099-01-01T00:00:00Z --format csv --out fixes.csv"],
    "coverwatch site apply": [
        "coverwatch users add chief --roles admin",
        f"coverwatch site apply new-site.yaml --server http://127.0.0.1:{PORT} --user chief "
        "--reason 'Service gate closed for works, written order 17'"],
    "coverwatch retention": ["coverwatch retention purge"],
    # docs/evidence.md
    "coverwatch audit anchor --out FILE": ["coverwatch audit anchor --out anchors.jsonl"],
    "coverwatch audit verify --anchors FILE [--public-key PEM]": [
        "coverwatch audit keys > site-key.pem",
        "coverwatch audit verify --anchors anchors.jsonl",
        "coverwatch audit verify --anchors anchors.jsonl --public-key site-key.pem"],
    "coverwatch evidence export --since T --until T [--post P] --out pack.zip [--db|--data-dir]": [
        SERVED, "coverwatch evidence export --since 2020-01-01T00:00:00Z "
        "--until 2099-01-01T00:00:00Z --out pack.zip --data-dir data",
        "coverwatch evidence export --since 2020-01-01T00:00:00Z --until 2099-01-01T00:00:00Z "
        "--post main-gate --out pack.zip"],
    "coverwatch audit head [--out FILE]": ["coverwatch audit head", "coverwatch audit head "
                                           "--out heads.jsonl"],
    "coverwatch evidence verify pack.zip [--public-key PEM]": [
        "coverwatch evidence verify pack.zip",
        "coverwatch evidence verify pack.zip --public-key site-key.pem"],
    'coverwatch retention hold --since T --until T --reason "inquest ref"': [
        "coverwatch retention hold --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z "
        '--reason "inquest ref"'],
    "coverwatch retention release ID": ["coverwatch retention release 1"],
    # docs/interop.md
    "TOKEN=$(coverwatch devices add alice-phone --officer A7 --data-dir data)": [
        "TOKEN=$(coverwatch devices add alice-phone --officer A7 --data-dir data) "
        '&& test -n "$TOKEN"'],
    "coverwatch export --site SITE --since T --until T --format geojson|gpx|csv [--out FILE] "
    "[--db URL | --data-dir DIR]": [
        f"coverwatch export --site site.yaml --since 2020-01-01T00:00:00Z "
        f"--until 2099-01-01T00:00:00Z --format {f} --out fixes.{f} --data-dir data"
        for f in ("geojson", "gpx", "csv")] + [
        f"coverwatch db upgrade --db {PG}",
        f"coverwatch export --site site.yaml --since 2020-01-01T00:00:00Z "
        f"--until 2099-01-01T00:00:00Z --format csv --db {PG}"],
    "coverwatch --site _deployment audit verify": [
        "coverwatch --site _deployment audit anchor --out deployment-anchors.jsonl",
        "coverwatch --site _deployment audit verify --anchors deployment-anchors.jsonl"],
    # docs/orders.md
    "coverwatch orders SITE [--format markdown|html] [--out FILE]": [
        "coverwatch orders site.yaml", "coverwatch orders site.yaml --format markdown",
        "coverwatch orders site.yaml --format html --out orders.html"],
    "coverwatch --site ID qualifications import": [
        "coverwatch --site harbour-yard qualifications import quals.csv"],
    # docs/planning.md
    "coverwatch plan check SITE PLAN --report out/ --at 2026-03-22T13:20:00Z": [
        "coverwatch plan check examples/yard/site.yaml examples/yard/plan-fixed.yaml "
        "--report out/ --at 2026-03-22T13:20:00Z"],
    "coverwatch orders SITE --patrol-plan DAY.yaml [--format html]": [
        "coverwatch orders examples/yard/site.yaml --patrol-plan day.yaml",
        "coverwatch orders examples/yard/site.yaml --patrol-plan day.yaml --format html"],
    # docs/scale.md
    "coverwatch db upgrade --db postgresql://…/coverwatch": [f"coverwatch db upgrade --db {PG}"],
    # The machine's NATS is one node: one replica here (three: tests/integration/test_bus_faults).
    "coverwatch serve --site a.yaml --site b.yaml … --db postgresql://…/coverwatch --bus "
    "nats://127.0.0.1:4222 --role gateway|worker|all [--bus-prefix coverwatch] "
    "[--bus-replicas 3]": [
        f"coverwatch serve --site a.yaml --site b.yaml --db {PG} --bus {NATS} --role {role} "
        "--bus-replicas 1" for role in ("gateway", "worker", "all")],
    # docs/server.md
    "coverwatch replay --until <horizon − 1 µs>": [
        "coverwatch replay examples/yard/site.yaml examples/yard/roving-patrol.jsonl "
        "--until 2026-03-22T13:00:00Z"],
    "coverwatch mqtt acl --site north.yaml --site south.yaml --passwd "
    "/etc/mosquitto/coverwatch.passwd --acl /etc/mosquitto/coverwatch.acl": [
        "coverwatch mqtt acl --site north.yaml --site south.yaml --passwd mosquitto/coverwatch."
        "passwd --acl mosquitto/coverwatch.acl"],
    "COVERWATCH_PASSWORD=… coverwatch site apply new-site.yaml --server http://127.0.0.1:8000 "
    '--user chief --reason "Service gate closed for works, written order 17"': [
        "coverwatch users add chief --roles admin",
        f"coverwatch site apply new-site.yaml --server http://127.0.0.1:{PORT} --user chief "
        '--reason "Service gate closed for works, written order 17"'],
    "COVERWATCH_PASSWORD='…' coverwatch users add alice --roles supervisor": [
        f"COVERWATCH_PASSWORD='{PASSWORD}' coverwatch users add alice --roles supervisor"],
    # docs/security.md
    "coverwatch serve --secure-cookies": ["coverwatch serve --site site.yaml --secure-cookies"],
    "coverwatch users set sam --add-notify 'tgram://BOT_TOKEN/CHAT_ID'": [
        "coverwatch users set sam --add-notify 'tgram://123456789:fictional-bot-token/4242'"],
    # docs/sites.md
    "coverwatch serve --site sites/yard.yaml --site sites/quay.yaml --db postgresql://…": [
        f"coverwatch serve --site sites/yard.yaml --site sites/quay.yaml --db {PG}"],
}
# Shown, but not run by a test, and why.
NOT_RUN: dict[str, str] = {
    "make test": "it is this test suite",
    "coverwatch devices add/enrol": "it names `devices add` and `devices enrol`, each run from "
                                    "its own line of server.md",
    "coverwatch audit head --tsa-url URL": "it needs an RFC 3161 time-stamping service; "
        "tests/integration/test_head_timestamps.py runs it against a local openssl TSA",
    "coverwatch serve --tsa-url URL": "it needs an RFC 3161 time-stamping service; "
        "tests/integration/test_witnesses.py gives heads to a local openssl TSA",
    "coverwatch audit head --tsa-url … --witness …": "it needs a time-stamping service and "
        "witnesses; tests/integration/test_witnesses.py runs it with a file witness",
    "coverwatch audit verify --tsa-ca CA.pem": "it needs a time-stamping authority's CA and "
        "replies; tests/integration/test_head_timestamps.py runs it with a local openssl TSA",
    "make demo": "it runs `coverwatch check` on both example sites and `coverwatch demo` with "
                 "both, which test_pages_layout.py runs (and this test, for `coverwatch demo`)",
    "coverwatch serve --bus … --bus-replicas 3": "three replicas need three NATS nodes: "
        "tests/integration/test_bus_faults.py runs it on three of its own (bench/faults.py)",
    "coverwatch replay --pack PACK": "it needs an evidence pack: "
        "tests/integration/test_standalone_verifier.py runs it on one the CLI makes",
    "make cluster": "it runs `coverwatch check` and `python -m coverwatch.cli.cluster` for good "
                    "on the machine's NATS; tests/integration/test_bus_operations.py runs the "
                    "same runner with a private prefix",
}

_PLACEHOLDER = re.compile(r"…|^[<\[]|[\]>]$|\||^[A-Z]+(\.[a-z]+)?$")
_SERVERS = re.compile(r"coverwatch (?:--site \S+ )?(serve|demo)\b")


def _key(line: str) -> str:
    return " ".join(line.split())


def _shown() -> list[tuple[str, str]]:
    """(document, line) of every `coverwatch` line the documents show, in document order,
    plus the README's `make` lines."""
    out = [(where.split(": ", 1)[0], _key(where.split(": ", 1)[1]))
           for where, _ in _documented_commands()]
    out += [("README.md", _key(line.split(" #")[0])) for block in _blocks(README)
            for line in block.splitlines() if line.startswith("make ")]
    return out


def _words(command: str) -> list[str]:
    """The words after `coverwatch`, as the shell would split them (pipes and $(…) cut)."""
    found = re.search(r"(?:^|[\s(])(?:\.venv/bin/)?coverwatch (.*)$", command)
    text = found.group(1).split("|")[0].split(")")[0] if found else command
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(word in it for word in needle)


@functools.cache  # the documents do not change during a run (collection asked ~150 times)
def _statuses() -> dict[str, int]:
    """The exit status a document's comment promises a line ("# flagged: exit 1")."""
    out = {}
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for raw in path.read_text("utf-8").splitlines():
            line, _, comment = raw.partition("  #")
            found = re.search(r"exit (\d)", comment)
            if found and "coverwatch" in line:
                out[_key(line)] = int(found.group(1))
    return out


@functools.cache  # read-only for its callers
def _plan() -> tuple[dict[str, list[str]], list[str]]:
    """What each document runs (concrete commands, in order) and the lines left unhandled."""
    shown = _shown()
    runs: dict[str, list[str]] = {}
    for doc, line in shown:
        if line in NOT_RUN:
            continue
        concrete = FILLED.get(line)
        if concrete is None and not any(_PLACEHOLDER.search(w) for w in _words(line)):
            status = _statuses().get(line)
            concrete = [line if status is None else f"{line}  # exit {status}"]
        runs.setdefault(doc, []).extend(concrete or [])
    ran = [_words(c) for cs in runs.values() for c in cs]
    unhandled = []
    for doc, line in shown:
        if line in NOT_RUN or line in FILLED:
            continue
        needed = [w for w in _words(line) if not _PLACEHOLDER.search(w)]
        if any(_PLACEHOLDER.search(w) for w in _words(line)):
            if not any(_is_subsequence(needed, r) and r != needed for r in ran):
                unhandled.append(f"{doc}: {line}")
        elif any(_is_subsequence(needed, r) and r != needed for r in ran):
            # a mention (`coverwatch check`): run in full elsewhere
            runs[doc] = [c for c in runs[doc] if c.split("  #")[0] != line]
    return runs, unhandled


def test_every_shown_command_is_run_or_says_why_not() -> None:
    runs, unhandled = _plan()
    assert sum(len(r) for r in runs.values()) > 60
    assert not unhandled, "fill these in FILLED or say in NOT_RUN why not:\n" + "\n".join(
        unhandled)
    assert all(reason.strip() for reason in NOT_RUN.values())
    shown = {line for _, line in _shown()}
    assert not set(FILLED) - shown, "FILLED names lines no document shows"
    assert not set(NOT_RUN) - shown, "NOT_RUN names lines no document shows"


def _layout(work: Path, doc: str) -> None:
    """The files a reader of the documents has beside them."""
    import shutil

    shutil.copytree(ROOT / "examples", work / "examples")
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "coverwatch").symlink_to(_bin() / "coverwatch")
    yard = (ROOT / "examples" / "yard" / "site.yaml").read_text("utf-8")
    quay = (ROOT / "examples" / "quay" / "site.yaml").read_text("utf-8")
    (work / "sites").mkdir()
    (work / "mosquitto").mkdir()
    for name, text in {"site.yaml": GPX_SITE if doc == "interop.md" else yard,
                       "new-site.yaml": yard.replace("grace_s: 60", "grace_s: 30", 1),
                       "north.yaml": yard, "south.yaml": quay, "a.yaml": yard, "b.yaml": quay,
                       "sites/yard.yaml": yard, "sites/quay.yaml": quay}.items():
        (work / name).write_text(text)
    for plan in ("yard/yard-plan.svg", "quay/quay-plan.svg"):  # the files name them
        for folder in (work, work / "sites"):
            (folder / Path(plan).name).write_bytes((ROOT / "examples" / plan).read_bytes())
    (work / "patrol.gpx").write_text((SAMPLES / "patrol-several-segments.gpx").read_text())
    (work / "roster.csv").write_text("officer,post,start,end\n"
                                     "A1,service-gate,2026-03-22T06:00:00Z,2026-03-22T18:00:00Z\n")
    (work / "quals.csv").write_text("officer,qualification,valid_until\nA1,armed,2099-01-31\n")
    (work / "tsa-ca.pem").write_text("")


def _fill(command: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        command = command.replace("{" + name + "}", value)
    return command


def _serve_briefly(command: str, work: Path, port: int, until: str | None = None) -> str:
    """Start a documented `serve`/`demo` line on a free port, wait until it says where it
    serves (or ``until``), stop it; what it printed."""
    until = until or f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --port {port}"], cwd=work,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while until not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen += line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert until in seen, f"{command}\n{seen}"
    return seen


def _listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A schema of this test's own in the test database (dropped afterwards)."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    url = os.environ.get("COVERWATCH_TEST_POSTGRES_URL",
                         "postgresql://postgres@127.0.0.1:5432/test")
    parsed = make_url(url)
    admin = psycopg.connect(parsed.set(drivername="postgresql").render_as_string(
        hide_password=False), autocommit=True)
    schema = f"cw_docs_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def bus_prefix() -> Iterator[str]:
    """A NATS prefix of this test's own (its stream and buckets deleted afterwards)."""
    import asyncio
    import contextlib
    import uuid

    from coverwatch.bus import BusNames, connect

    names = BusNames(f"cwt-{uuid.uuid4().hex[:10]}")
    yield names.prefix

    async def cleanup() -> None:
        nc = await connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        for stream in (names.stream, f"KV_{names.leases}", f"KV_{names.checkpoints}"):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()

    asyncio.run(cleanup())


_DOCS = ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]


# The documents whose commands test_docs_commands.py runs (a file of its own, so that a
# parallel run gives the documents to two workers).
SECOND_HALF = ("README.md", "evidence.md", "scale.md", "security.md", "sites.md")


@pytest.mark.parametrize("doc", [d for d in _DOCS if d in _plan()[0] and d not in SECOND_HALF])
def test_the_commands_a_document_shows_run(doc: str, tmp_path: Path, postgres_url: str,
                                           bus_prefix: str) -> None:
    """Each command of the document, in order, in a reader's directory: it exits as the
    document says (0 unless its comment says "exit N"); `serve` and `demo` lines start, say
    where they serve, and are stopped."""
    run_document(doc, tmp_path, postgres_url, bus_prefix)


def run_document(doc: str, work: Path, postgres_url: str, bus_prefix: str) -> None:
    """Run one document's commands in ``work`` (see the test above)."""
    _layout(work, doc)
    values = {"pg": postgres_url, "nats": f"nats://127.0.0.1:4222 --bus-prefix {bus_prefix}"}
    server: subprocess.Popen[bytes] | None = None
    env_password = {"COVERWATCH_PASSWORD": PASSWORD}
    try:
        for command in _plan()[0][doc]:
            # A free port can be taken by another worker before the server binds it:
            # then the server exits, and it is started again on another.
            for _ in range(3 if PORT in command and server is None else 0):
                values["port"] = str(_free_port())
                log = work / "server.log"
                with log.open("w") as out:
                    server = subprocess.Popen(
                        ["bash", "-c", f"exec coverwatch serve --site site.yaml --port "
                         f"{values['port']}"], cwd=work, env={**_env(), **env_password},
                        stdout=out, stderr=subprocess.STDOUT)
                deadline = time.monotonic() + 180
                while (not _listening(int(values["port"])) and server.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.2)
                if server.poll() is None:
                    break
                server = None
            if PORT in command:
                assert server is not None and "control room:" in log.read_text(), \
                    log.read_text()
            line = _fill(command, values).split("  #")[0].strip()
            status = re.search(r"exit (\d)", command)
            if _SERVERS.search(line) and "--help" not in line:
                _serve_briefly(line, work, _free_port())
                continue
            done = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work,
                                  env={**_env(), **env_password}, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == (int(status.group(1)) if status else 0), (
                f"{doc}: {line}\n{done.stdout}\n{done.stderr}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
