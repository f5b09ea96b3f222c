"""Shared test setup: makes ``tests/`` importable (``import reference``, ``import strategies``)
and warms caches that a first use would otherwise build inside a timed step."""

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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


@pytest.fixture(scope="session", autouse=True)
def _warm_matplotlib_font_cache() -> None:
    """Build matplotlib's font cache once, before any test: on a cold cache the first plot
    takes tens of seconds on a loaded machine, and a browser test waiting for the planning
    page's pictures (in a server subprocess sharing the same cache) timed out doing it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")
