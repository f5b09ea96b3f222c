"""The examiner's folder for the standalone verifier's tests: the verifier as the one file
a pack carries (``verify_pack.py``), and a guard that lets it import only the standard
library and cryptography (tests/integration/test_standalone_verifier.py,
test_standalone_tsa.py)."""

from __future__ import annotations

from pathlib import Path

from coverwatch.evidence.verifierfile import verifier_source

__all__ = ["examiner_folder"]

# Run the copied file with only the standard library and cryptography importable.
_GUARD = """
import sys, runpy
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "_cffi_backend", "cffi"}
class Guard:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ALLOWED:
            raise ImportError(f"the standalone verifier imported {name}")
        return None
sys.meta_path.insert(0, Guard())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def examiner_folder(examiner: Path) -> Path:
    """Make ``examiner`` with the verifier (``verify_pack.py``, alone) and ``guard.py``;
    returns the verifier's path."""
    examiner.mkdir()
    verifier = examiner / "verify_pack.py"
    verifier.write_text(verifier_source(), encoding="utf-8")
    (examiner / "guard.py").write_text(_GUARD)
    return verifier
