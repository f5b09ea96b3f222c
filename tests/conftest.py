"""Shared test setup: makes ``tests/`` importable (``import reference``, ``import strategies``)
and warms caches that a first use would otherwise build inside a timed step."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings

from coverwatch.storage.users import UserRepository

__all__: list[str] = []

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# No property test may pass or fail with the machine's load: Hypothesis's per-example
# deadline and its "input generation is slow" check both measure wall time (one failed
# under four pytest workers and other load). What a property checks stays the same.
settings.register_profile("coverwatch", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("coverwatch")

# Stores made in a test process hash passwords with argon2 at a test cost (1 pass over 8 MiB,
# one lane: ~5 ms) instead of the product's default (3 passes over 64 MiB, four lanes: ~0.2 s
# of CPU each, and a run makes hundreds). Still argon2id, still checked and salted the same
# way; the default is the product's and untouched, and servers started as their own process
# (`coverwatch serve`, `demo`, the cluster's workers) keep it. Tests of the hasher set theirs.
UserRepository.password_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def _warm_matplotlib_font_cache() -> None:
    """Build matplotlib's font cache once, before any test: on a cold cache the first plot
    takes tens of seconds on a loaded machine, and a browser test waiting for the planning
    page's pictures (in a server subprocess sharing the same cache) timed out doing it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")


@pytest.fixture(scope="session")
def forked_cli() -> Iterator[Path]:
    """One process that has imported coverwatch, forking each `coverwatch` command a CLI test
    runs (tests/e2e/clifork.py): each command is still a process of its own, with its own
    exit status, output and environment, started in milliseconds instead of a second of CPU.
    (Here rather than in an e2e conftest: tests/integration imports its conftest by name.)"""
    from clifork import shared_fork_server  # tests/e2e, on the path of the tests that ask

    with shared_fork_server() as bin_dir:
        yield bin_dir
