"""The standalone verifier is one file (``verify_pack.py``) built from its modules: it
imports only the standard library and cryptography, always the same bytes, and the build
refuses what it cannot join safely."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from coverwatch.evidence import verifierfile
from coverwatch.evidence.verifierfile import verifier_digest, verifier_source


def test_the_file_imports_only_the_standard_library_and_cryptography() -> None:
    source = verifier_source()
    tree = ast.parse(source)
    imported = {a.name.partition(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {str(n.module).partition(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
    assert "_proofs" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"check_pack", "main", "verify_inclusion", "verify_timestamp_token",
            "check_alerts", "check_alert_records", "event_key"} <= defined
    assert source.startswith("#!/usr/bin/env python3\n")
    assert verifier_digest() == verifier_digest()  # the same sources, the same bytes


def _parts(tmp_path: Path, proofs: str, main: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "standalone_proofs.py").write_text(proofs)
    (tmp_path / "standalone_records.py").write_text('"""r"""\nimport json\n')
    (tmp_path / "standalone.py").write_text(main)
    monkeypatch.setattr(verifierfile, "_HERE", tmp_path)


def test_names_defined_twice_or_a_top_level_try_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _parts(tmp_path, '"""p"""\nimport json\n\ndef f(): return 1\n',
           '"""s"""\nfrom coverwatch.evidence import standalone_proofs as _proofs\n\n'
           'def g(): return _proofs.f()\n', monkeypatch)
    joined = verifier_source()
    assert "def g(): return f()" in joined and "import json" in joined
    _parts(tmp_path, '"""p"""\ndef f(): return 1\n', '"""s"""\nf = 2\n', monkeypatch)
    with pytest.raises(ValueError, match=r"two verifier modules define \['f'\]"):
        verifier_source()
    _parts(tmp_path, '"""p"""\ntry:\n    import x\nexcept ImportError:\n    x = None\n',
           '"""s"""\n', monkeypatch)
    with pytest.raises(ValueError, match="top-level Try"):
        verifier_source()
