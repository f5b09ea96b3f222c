"""Shared test setup: makes ``tests/`` importable (``import reference``, ``import strategies``)."""

import sys
from pathlib import Path

__all__: list[str] = []

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
