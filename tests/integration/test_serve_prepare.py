"""`coverwatch serve` on a new database: it upgrades it itself (it used to end in a
76-line traceback naming `db upgrade`), or, in distributed mode where nodes would race
to migrate, refuses in one line naming the command. Then it says what it serves."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import Database
from coverwatch.cli import app
from coverwatch.cli.serving import StoreState, prepare_store, print_serving
from coverwatch.storage import open_store

ROOT = Path(__file__).resolve().parents[2]
YARD = ROOT / "examples" / "yard" / "site.yaml"
QUAY = ROOT / "examples" / "quay" / "site.yaml"


def test_serve_upgrades_a_new_database_itself(database: Database) -> None:
    assert prepare_store(database.url, database.data_dir, distributed=False) == StoreState(0, 0)
    open_store(database.url, database.data_dir).close()  # at this version's schema now
    # An up-to-date database is left as it is.
    assert prepare_store(database.url, database.data_dir, distributed=False) == StoreState(0, 0)


def test_distributed_serve_refuses_an_old_database_in_one_line(
    database: Database, capsys: pytest.CaptureFixture[str],
) -> None:
    if database.url is None:
        pytest.skip("distributed mode runs on PostgreSQL only")
    with pytest.raises(typer.Exit) as stopped:
        prepare_store(database.url, database.data_dir, distributed=True)
    assert stopped.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "database schema is at nothing" in err
    assert "run `coverwatch db upgrade --db URL` once" in err
    assert "password" not in err.lower()


def test_serve_on_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "serve", "--site", str(YARD), "--data-dir", str(tmp_path),
        "--db", "postgresql://nobody:secret@127.0.0.1:9/none"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot open the database" in lines[0]
    assert "secret" not in result.output


def test_serve_says_what_it_serves_and_what_to_do_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    print_serving([YARD, QUAY], None, tmp_path / "d", "http://127.0.0.1:8000", StoreState(0, 0))
    out = capsys.readouterr().out
    assert "serving 2 site(s): harbour-yard (Harbour Yard (fictional)), quay-depot" in out
    assert "control room: http://127.0.0.1:8000/  (all sites: http://127.0.0.1:8000/sites)" in out
    assert "no users yet: create one with" in out
    assert (f"coverwatch users add alice --roles supervisor,admin --data-dir {tmp_path / 'd'}"
            in out)
    # The roles the examples' escalation names and a contact (as the README's live section):
    # without them alerts reached nobody, a system alert at the next start.
    assert (f"coverwatch users set alice --notify 'ntfys://ntfy.sh/choose-a-topic' --data-dir "
            f"{tmp_path / 'd'}" in out)
    assert "no devices yet" in out
    print_serving([YARD], None, Path("data"), "http://h:1", StoreState(1, 3))
    out = capsys.readouterr().out
    assert "no users yet" not in out and "no devices yet" not in out
