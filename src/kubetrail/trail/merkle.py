"""RFC 9162 §2.1 Merkle tree: hashing, the compact range, proof generation and verification.

Why in-house: no Python library implements RFC 6962/9162 together with C2SP checkpoints under a
licence kubetrail can ship (see docs/specs/trail-format.md). Everything here is written from the RFC
text; tests/unit/trail/rfc_reference.py transcribes the RFC's recursive MTH/PATH/PROOF definitions
literally and the property tests compare the two.

Node addressing: ``(level, index)`` names the perfect subtree over leaves
``[index << level, (index + 1) << level)``; level 0 is the leaf hash. Only *complete* subtrees have
an address, so a stored node never changes once written.

Policies the RFC leaves open (also in the spec): consistency from size 0 is the empty proof (as C2SP
tlog-witness); equal sizes need an empty proof and equal roots; every hash must be 32 bytes; proofs
with extra or missing elements fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from itertools import count, repeat

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]
"""``get(level, index)`` -> hash of a complete stored subtree."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node = SHA-256(0x01 || left || right); the prefix gives second-preimage resistance."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2): the RFC's k."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """One hash per set bit of the size: enough to append and to compute the root at any time.

    ``append`` returns the complete nodes (level >= 1) it created so the caller can store them and
    later serve O(log n) proofs without rehashing leaves.
    """

    __slots__ = ("size", "stack")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if len(stack) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes, not {len(stack)}")
        self.size = size
        self.stack = list(stack)

    @classmethod
    def load(cls, size: int, get: NodeGetter) -> CompactRange:
        """Rebuild the range at ``size`` from stored complete subtrees (largest first)."""
        stack = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                stack.append(get(level, start >> level))
                start += 1 << level
        return cls(size, stack)

    def append(self, leaf: bytes, nodes: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add one leaf hash; completed interior nodes go to ``nodes`` as (level, index, hash)."""
        stack = self.stack
        stack.append(leaf)
        i = self.size
        level = 0
        while i & 1:
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            i >>= 1
            level += 1
            if nodes is not None:
                nodes.append((level, i, stack[-1]))
        self.size += 1

    def extend(self, leaves: Iterable[bytes], nodes: list[tuple[int, int, bytes]] | None = None) -> None:
        """Append many leaf hashes level by level (same result as ``append`` one at a time, but the
        hashing runs in tight comprehensions: this is the ingest hot path)."""
        level_hashes = list(leaves)
        if not level_hashes:
            return
        old = self.stack
        old_size = self.size
        added = len(level_hashes)
        # old[k] is the complete node at the k-th set bit of old_size, from the top
        old_by_level = {}
        k = 0
        for level in range(old_size.bit_length() - 1, -1, -1):
            if old_size >> level & 1:
                old_by_level[level] = old[k]
                k += 1
        kept: dict[int, bytes] = {}
        start = old_size
        level = 0
        sha = _sha256
        while level_hashes:
            if start & 1:
                level_hashes.insert(0, old_by_level.pop(level))
                start -= 1
            if len(level_hashes) & 1:
                kept[level] = level_hashes.pop()
            parents = [sha(b"\x01" + left + right).digest()
                       for left, right in zip(level_hashes[0::2], level_hashes[1::2], strict=True)]
            start >>= 1
            level += 1
            if nodes is not None and parents:
                nodes.extend(zip(repeat(level), count(start), parents))
            level_hashes = parents
        kept.update(old_by_level)  # untouched higher levels
        self.size = old_size + added
        self.stack = [kept[lv] for lv in sorted(kept, reverse=True)]

    def append_entries(self, entries: Iterable[bytes], nodes: list[tuple[int, int, bytes]] | None = None) -> None:
        """Hash entries as leaves (0x00 prefix) and append them."""
        sha = _sha256
        self.extend([sha(b"\x00" + e).digest() for e in entries], nodes)

    def root(self) -> bytes:
        """Fold the range from the right: the RFC's unbalanced right spine, never padded."""
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


def root_of(leaves: Iterable[bytes]) -> bytes:
    """MTH of a sequence of leaf hashes, streamed in O(log n) memory (RFC 9162 §2.1.2)."""
    cr = CompactRange()
    cr.extend(leaves)
    return cr.root()


def subtree_hash(lo: int, hi: int, get: NodeGetter) -> bytes:
    """MTH(D[lo:hi]) from stored complete subtrees: O(log n) lookups for any range."""
    n = hi - lo
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return get(level, lo >> level)
    k = split_point(n)
    return node_hash(subtree_hash(lo, lo + k, get), subtree_hash(lo + k, hi, get))


def root_at(size: int, get: NodeGetter) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, get)


def inclusion_path(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1): the leaf's sibling first, the root's child last."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    path = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, get))
            lo += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, get: NodeGetter) -> list[bytes]:
    """PROOF(old, D[new]) (RFC 9162 §2.1.4.1); empty when old is 0 or old == new (our policy)."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    proof = []
    lo, hi, whole = 0, new, True
    while old != hi:
        k = split_point(hi - lo)
        if old <= lo + k:
            proof.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k, get))
            lo += k
            whole = False
    if not whole:
        proof.append(subtree_hash(lo, hi, get))
    proof.reverse()
    return proof


def _hashes_ok(*hashes: bytes, proof: Sequence[bytes] = ()) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in (*hashes, *proof))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step; every element is used and the length must be exact."""
    if not 0 <= index < size or not _hashes_ok(leaf, root, proof=proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
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
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, plus the 0 -> n and n -> n policies of the module docstring."""
    if not 0 <= old <= new or not _hashes_ok(old_root, new_root, proof=proof):
        return False
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if old == new:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
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
    return fr == old_root and sr == new_root and sn == 0
