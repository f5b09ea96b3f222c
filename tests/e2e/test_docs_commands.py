"""The other documents' commands, run as test_docs_examples.py runs them: in a file of
its own so that a parallel run (pytest-xdist, one file per worker) spreads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_docs_examples import SECOND_HALF, bus_prefix, fast_cli, postgres_url, run_document

__all__ = ["bus_prefix", "fast_cli", "postgres_url"]  # the fixtures, for pytest to find here


@pytest.mark.parametrize("doc", SECOND_HALF)
def test_the_commands_a_document_shows_run(doc: str, tmp_path: Path, postgres_url: str,
                                           bus_prefix: str) -> None:
    """Each command of the document, in order (test_docs_examples.run_document)."""
    run_document(doc, tmp_path, postgres_url, bus_prefix)
