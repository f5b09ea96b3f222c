"""The standalone verifier repeats coverwatch's hashing on purpose (it must run alone):
these tests hold its copies equal to the originals, so that the two cannot drift apart.
They test the one file a pack carries (``verify_pack.py``, built by
:mod:`coverwatch.evidence.verifierfile`), loaded from its text: it imports nothing of
coverwatch (tests/unit/test_verifierfile.py)."""

from __future__ import annotations

import math
import random
import struct
import sys
import types

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain import merkle
from coverwatch.evidence.verifierfile import verifier_source
from coverwatch.storage.audit import entry_hash
from coverwatch.storage.store import row_key


def _load_verifier() -> types.ModuleType:
    module = types.ModuleType("verify_pack")
    module.__file__ = "verify_pack.py"
    sys.modules["verify_pack"] = module  # dataclasses look their module up
    exec(compile(verifier_source(), "verify_pack.py", "exec"), module.__dict__)
    return module


standalone = _load_verifier()

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400)
@given(_json)
def test_canonical_json_is_orjsons(value: object) -> None:
    assert standalone.canonical(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_canonical_floats_of_every_magnitude() -> None:
    rng = random.Random(5)
    for _ in range(20000):
        v = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(v):
            assert standalone.canonical(v) == orjson.dumps(v), v
    for e in range(-12, 24):
        assert standalone.canonical(1.5 * 10.0**e) == orjson.dumps(1.5 * 10.0**e)


def test_proofs_agree_with_the_domains() -> None:
    rng = random.Random(9)
    for n in [1, 2, 3, 5, 8, 13, 31, 64, 100]:
        hashes = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(n)]
        levels = merkle.Levels(hashes)
        top = merkle.root(hashes)
        for i in range(n):
            path = levels.inclusion_proof(i, n)
            assert path == merkle.inclusion_proof(i, hashes)
            assert standalone.verify_inclusion(i, n, hashes[i], path, top)
            assert not standalone.verify_inclusion(i, n, hashes[(i + 1) % n], path, top) or n == 1
        for m in range(1, n + 1):
            proof = levels.consistency_proof(m, n)
            first = merkle.root(hashes[:m])
            assert standalone.verify_consistency(m, n, first, top, proof) == \
                merkle.verify_consistency(m, n, first, top, proof) is True
            if m < n:
                assert not standalone.verify_consistency(m, n, top, top, proof)


def test_event_keys_and_audit_hashes_agree_with_the_stores() -> None:
    rows = [
        {"kind": "fix", "officer": "A1", "t_us": 5, "x": 1.25, "y": -3, "accuracy": 4.0,
         "source": "t", "device": "ph"},
        {"kind": "fix", "officer": "A1", "t_us": 5, "x": 1e-7, "y": 2.0, "accuracy": 9.0,
         "accuracy_source": "default", "source": "t"},
        {"kind": "duty", "officer": "B", "t_us": 7, "on": True, "capabilities": ["b", "a"],
         "source": "t"},
        {"kind": "gate", "post": "g", "t_us": 8, "open": False, "source": "t"},
        {"kind": "flag", "flag": "f", "t_us": 9, "on": True, "source": "t"},
    ]
    for r in rows:
        assert standalone.event_key(r) == row_key(r)
    e = {"id": 3, "at": "2027-01-01T00:00:00Z", "actor": "ann", "action": "x.y",
         "subject": "post:é", "details": {"n": 0.1, "l": [1, None]}, "prev_hash": "ab"}
    assert standalone.audit_entry_hash(e) == entry_hash(**e)
