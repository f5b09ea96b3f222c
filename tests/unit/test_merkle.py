"""The transparency log's Merkle tree against a naive, literal transcription of RFC 9162."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from coverwatch.domain.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:  # RFC 9162 2.1.1, over leaf data
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:  # 2.1.3.1
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:  # 2.1.4.1
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def _leaves(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 70))
def test_root_is_the_rfc_mth(n: int) -> None:
    d = _leaves(n)
    assert root([leaf_hash(x) for x in d]) == mth(d)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_match_the_rfc_and_verify(nm: tuple[int, int]) -> None:
    n, m = nm
    d = _leaves(n)
    hashes = [leaf_hash(x) for x in d]
    proof = inclusion_proof(m, hashes)
    assert proof == path(m, d)
    assert verify_inclusion(m, n, hashes[m], proof, mth(d))
    assert not verify_inclusion(m, n, leaf_hash(b"other"), proof, mth(d))
    if n > 1:
        assert not verify_inclusion((m + 1) % n, n, hashes[m], proof, mth(d))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_consistency_proofs_match_the_rfc_and_verify(mn: tuple[int, int]) -> None:
    m, n = mn
    d = _leaves(n)
    hashes = [leaf_hash(x) for x in d]
    proof = consistency_proof(m, hashes)
    if 0 < m < n:
        assert proof == subproof(m, d, True)
    assert verify_consistency(m, n, mth(d[:m]), mth(d), proof)
    if 0 < m < n:
        # A rewritten earlier leaf, or a claimed first root that is not a prefix, fails.
        forked = [leaf_hash(b"rewritten"), *hashes[1:]]
        assert not verify_consistency(m, n, mth(d[:m]), root(forked), proof)
        assert not verify_consistency(m, n, node_hash(EMPTY_ROOT, EMPTY_ROOT), mth(d), proof)
        assert not verify_consistency(m, n, mth(d[:m]), mth(d), proof[:-1])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_levels_give_the_same_roots_and_proofs(mn: tuple[int, int]) -> None:
    from coverwatch.domain.merkle import Levels

    m, n = mn
    hashes = [leaf_hash(x) for x in _leaves(n)]
    levels = Levels(hashes + [leaf_hash(b"later")] * 3)  # a longer log than either head
    assert levels.root(n) == root(hashes) and levels.root(m) == root(hashes[:m])
    assert levels.consistency_proof(m, n) == consistency_proof(m, hashes)
