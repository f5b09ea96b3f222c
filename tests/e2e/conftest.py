"""Fixtures shared by the end-to-end tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from clifork import shared_fork_server

__all__: list[str] = []


@pytest.fixture(scope="session")
def forked_cli() -> Iterator[Path]:
    """One process that has imported coverwatch, forking each `coverwatch` command a CLI test
    runs (clifork.py): each command is still a process of its own, with its own exit status,
    output and environment, started in milliseconds instead of a second of CPU each."""
    with shared_fork_server() as bin_dir:
        yield bin_dir
