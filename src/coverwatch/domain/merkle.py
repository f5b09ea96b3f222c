"""A transparency log's Merkle tree, exactly as RFC 9162 (Certificate Transparency 2.0) has it.

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``;
the tree head of n leaves is the RFC's MTH (the left subtree holds the largest power
of two below n), so trees of any size have one root. Inclusion and consistency
proofs are made by the RFC's PATH and PROOF and checked by its verification
algorithms (sections 2.1.3.2 and 2.1.4.2), so any RFC 9162 verifier can check
them. Functions take the leaves' hashes (``bytes`` of 32), not the leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "Levels",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = HASH()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaves whose hashes are ``hashes`` (iterative: no recursion depth limit)."""
    if not hashes:
        return EMPTY_ROOT
    # Merge full power-of-two subtrees left to right, then fold the right edge:
    # this equals the RFC's recursive split.
    stack: list[tuple[int, bytes]] = []  # (size, hash) of complete subtrees
    for h in hashes:
        size, node = 1, h
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            size, node = size * 2, node_hash(left, node)
        stack.append((size, node))
    node = stack.pop()[1]
    while stack:
        node = node_hash(stack.pop()[1], node)
    return node


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``hashes``."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(hashes)}")
    path: list[bytes] = []
    lo, hi, m = 0, len(hashes), index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(root(hashes[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root(hashes[lo:lo + k]))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(first: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): that the tree of the first ``first`` leaves is a prefix of ``hashes``."""
    n = len(hashes)
    if not 0 <= first <= n:
        raise ValueError(f"a tree of {first} is not a prefix of a tree of {n}")
    if first in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, n, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(root(hashes[lo + k:hi]))
            hi = lo + k
        else:
            proof.append(root(hashes[lo:lo + k]))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(root(hashes[lo:hi]))
    proof.reverse()
    return proof


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], expected_root: bytes,
) -> bool:
    """RFC 9162 2.1.3.2: is leaf hash ``leaf`` at ``index`` in the tree ``expected_root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes],
) -> bool:
    """RFC 9162 2.1.4.2: is the tree ``first_root`` (``first`` leaves) a prefix of the other?"""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof and (second > 0 or second_root == EMPTY_ROOT)
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the first root is a node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class Levels:
    """Every level of the tree over ``hashes`` (about 2n hashes), so the root of any
    prefix, and so any proof, costs O(log n) hashes instead of O(n)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(hashes)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1])
                                for i in range(0, len(below) - 1, 2)])

    def range_root(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``lo … hi-1``, for ``lo`` a multiple of the largest power of two
        not above ``hi - lo`` (every range the RFC's PATH and PROOF ask for is one)."""
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:  # a complete subtree: stored at its level
            level = n.bit_length() - 1
            return self.levels[level][lo >> level]
        k = _split(n)
        return node_hash(self.range_root(lo, lo + k), self.range_root(lo + k, hi))

    def root(self, size: int) -> bytes:
        return self.range_root(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]), as :func:`inclusion_proof`."""
        if not 0 <= index < size <= len(self.levels[0]):
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                path.append(self.range_root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.range_root(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, first: int, size: int) -> list[bytes]:
        """PROOF(first, D[size]), as :func:`consistency_proof`."""
        if not 0 <= first <= size <= len(self.levels[0]):
            raise ValueError(f"a tree of {first} is not a prefix of a tree of {size}")
        if first in (0, size):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, size, first, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self.range_root(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_root(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            proof.append(self.range_root(lo, hi))
        proof.reverse()
        return proof
