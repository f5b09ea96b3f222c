"""The other documents' commands, run as test_docs_examples.py runs them: in a file of
its own so that a parallel run (pytest-xdist, one file per worker) spreads them. Also the
README's live section up to its `serve`, whose start raises no system alert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_docs_examples import (
    README,
    SECOND_HALF,
    _bash,
    _blocks,
    _free_port,
    _serve_briefly,
    _workdir,
    bus_prefix,
    fast_cli,
    postgres_url,
    run_document,
)

__all__ = ["bus_prefix", "fast_cli", "postgres_url"]  # the fixtures, for pytest to find here


@pytest.mark.parametrize("doc", SECOND_HALF)
def test_the_commands_a_document_shows_run(doc: str, tmp_path: Path, postgres_url: str,
                                           bus_prefix: str) -> None:
    """Each command of the document, in order (test_docs_examples.run_document)."""
    run_document(doc, tmp_path, postgres_url, bus_prefix)


def test_the_readme_live_section_starts_without_a_system_alert(tmp_path: Path) -> None:
    """README step 5 before its `serve`: the user it creates has the roles the example's
    escalation names and a contact, so `serve` starts without "reaches nobody" system
    alerts (alice had no contact, and nobody was admin)."""
    work = _workdir(tmp_path)
    block = next(b for b in _blocks(README) if " serve --site examples/yard/site.yaml" in b)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    serve = next(line for line in lines if " serve --site examples/yard/site.yaml" in line)
    assert any(" users set alice --notify " in line for line in lines)
    for line in lines[:lines.index(serve)]:
        # Its contact a closed local port: no message leaves the machine.
        line = re.sub(r"--notify '[^']*'", "--notify 'json://127.0.0.1:9/alice'", line)
        done = _bash(line, work)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    seen = _serve_briefly(serve, work, _free_port(), until="Application startup complete")
    assert "system alert" not in seen and "reaches nobody" not in seen, seen
