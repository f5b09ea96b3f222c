"""The examiner's folder for the standalone verifier's tests: the verifier's two files
copied out, and a guard that lets the copy import only the standard library and
cryptography (tests/integration/test_standalone_verifier.py, test_standalone_tsa.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from coverwatch.evidence import standalone, standalone_proofs

__all__ = ["examiner_folder"]

# Run the copied file with only the standard library and cryptography importable.
_GUARD = """
import sys, runpy
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "_cffi_backend", "cffi",
                                           "standalone_proofs"}
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
    """Make ``examiner`` with the verifier (as ``verify_pack.py``), its sibling and
    ``guard.py``; returns the verifier's path."""
    examiner.mkdir()
    verifier = examiner / "verify_pack.py"
    shutil.copy(standalone.__file__, verifier)
    shutil.copy(standalone_proofs.__file__, examiner / "standalone_proofs.py")
    (examiner / "guard.py").write_text(_GUARD)
    return verifier
