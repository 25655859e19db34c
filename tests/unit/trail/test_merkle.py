"""Merkle code against the literal RFC transcription (every size 1-300, random larger) and vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rfc_reference import MTH, PATH, PROOF

from kubetrail.trail import merkle as m

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]
ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


class Tree:
    """A store stand-in: every complete node, addressed (level, index), built by CompactRange."""

    def __init__(self, data: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.cr = m.CompactRange()
        out: list[tuple[int, int, bytes]] = []
        for i, d in enumerate(data):
            h = m.leaf_hash(d)
            self.nodes[(0, i)] = h
            self.cr.append(h, out)
        for level, idx, h in out:
            self.nodes[(level, idx)] = h

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


def data_of(n: int, salt: int = 0) -> list[bytes]:
    return [f"{salt}:{i}".encode() * (i % 3 + 1) for i in range(n)]


def check_size(n: int, salt: int, probes: list[int] | None = None) -> None:
    data = data_of(n, salt)
    t = Tree(data)
    root = MTH(data)
    assert t.cr.root() == root == m.root_at(n, t.get) == m.root_of(m.leaf_hash(d) for d in data)
    assert m.CompactRange.load(n, t.get).root() == root
    for i in (range(n) if probes is None else probes):
        path = m.inclusion_path(i, n, t.get)
        assert path == PATH(i, data)
        assert m.verify_inclusion(i, n, m.leaf_hash(data[i]), path, root)
    for old in (range(1, n) if probes is None else [p for p in probes if 0 < p < n]):
        proof = m.consistency_proof(old, n, t.get)
        assert proof == PROOF(old, data)
        assert m.verify_consistency(old, n, MTH(data[:old]), root, proof)


def test_every_size_1_to_300() -> None:
    """All indexes and all old sizes for small trees; a sample of each for the larger ones."""
    for n in range(1, 301):
        probes = None if n <= 64 else sorted({0, 1, n // 2, n - 2, n - 1, (n * 7) % n, (n * 13) % n})
        check_size(n, salt=n, probes=probes)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(301, 5000), salt=st.integers(0, 1000), picks=st.lists(st.integers(0, 10**9), max_size=6))
def test_random_larger_sizes(n: int, salt: int, picks: list[int]) -> None:
    check_size(n, salt, sorted({0, n - 1, *(p % n for p in picks)}))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), i=st.integers(0, 299), flip=st.integers(0, 31))
def test_tampered_inclusion_proofs_fail(n: int, i: int, flip: int) -> None:
    data = data_of(n)
    i %= n
    t = Tree(data)
    root, leaf = t.cr.root(), m.leaf_hash(data[i])
    path = m.inclusion_path(i, n, t.get)
    assert not m.verify_inclusion(i, n, leaf, [*path, leaf], root)  # trailing garbage
    if path:
        bad = bytearray(path[flip % len(path)])
        bad[flip] ^= 1
        assert not m.verify_inclusion(i, n, leaf, [bytes(bad) if p == path[flip % len(path)] else p for p in path],
                                      root)
        assert not m.verify_inclusion(i, n, leaf, path[:-1], root)
        assert not m.verify_inclusion(i, n, leaf, [root, *path], root)  # preceding garbage


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 300), old=st.integers(1, 299))
def test_tampered_consistency_proofs_fail(n: int, old: int) -> None:
    old = old % (n - 1) + 1
    data = data_of(n)
    t = Tree(data)
    proof = m.consistency_proof(old, n, t.get)
    r1, r2 = MTH(data[:old]), t.cr.root()
    assert m.verify_consistency(old, n, r1, r2, proof)
    assert not m.verify_consistency(old, n, r1, r2, [*proof, r1])
    assert not m.verify_consistency(old, n, r1, r2, proof[1:]) or len(proof) == 0
    assert not m.verify_consistency(old, n, r2, r1, proof)
    assert not m.verify_consistency(old, n, r1, r2, [])


def test_rfc6962_vectors() -> None:
    t = Tree(LEAVES)
    for n, want in enumerate(ROOTS, 1):
        assert m.root_at(n, t.get).hex() == want == MTH(LEAVES[:n]).hex()
    assert [h.hex()[:8] for h in m.inclusion_path(5, 8, t.get)] == ["bc1a0643", "ca854ea1", "d37ee418"]
    assert [h.hex()[:8] for h in m.inclusion_path(3, 7, t.get)] == ["0298d122", "fac54203", "837dbb15"]
    assert [h.hex()[:8] for h in m.consistency_proof(3, 7, t.get)] == ["0298d122", "07506a85", "fac54203",
                                                                        "837dbb15"]
    assert [h.hex()[:8] for h in m.consistency_proof(6, 8, t.get)] == ["0ebc5d34", "ca854ea1", "d37ee418"]
    assert m.EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest()
    assert m.leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert m.node_hash(b"N123", b"N456").hex() == \
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


def test_edge_policies() -> None:
    """0 -> n is the empty proof against the empty root; n -> n needs equal roots; 32-byte hashes only."""
    t = Tree(LEAVES)
    r = t.cr.root()
    assert m.consistency_proof(0, 8, t.get) == [] and m.verify_consistency(0, 8, m.EMPTY_ROOT, r, [])
    assert not m.verify_consistency(0, 8, r, r, [])
    assert not m.verify_consistency(0, 8, m.EMPTY_ROOT, r, [r])
    assert m.verify_consistency(8, 8, r, r, []) and not m.verify_consistency(8, 8, r, m.EMPTY_ROOT, [])
    assert not m.verify_consistency(8, 8, r, r, [r])
    assert not m.verify_inclusion(0, 8, m.leaf_hash(LEAVES[0])[:31], m.inclusion_path(0, 8, t.get), r)
    assert not m.verify_inclusion(8, 8, m.leaf_hash(LEAVES[0]), [], r)
    assert m.verify_inclusion(0, 1, m.leaf_hash(LEAVES[0]), [], m.leaf_hash(LEAVES[0]))
    with pytest.raises(ValueError):
        m.inclusion_path(8, 8, t.get)
    with pytest.raises(ValueError):
        m.consistency_proof(5, 4, t.get)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.integers(0, 70), max_size=8))
def test_batch_extend_equals_one_by_one(batches: list[int]) -> None:
    """The level-by-level batch append gives the same range and the same completed nodes."""
    one, many = m.CompactRange(), m.CompactRange()
    n1: list[tuple[int, int, bytes]] = []
    n2: list[tuple[int, int, bytes]] = []
    i = 0
    for b in batches:
        data = [f"{j}".encode() for j in range(i, i + b)]
        for d in data:
            one.append(m.leaf_hash(d), n1)
        many.append_entries(data, n2)
        i += b
        assert (one.size, one.stack, one.root()) == (many.size, many.stack, many.root())
        assert sorted(n1) == sorted(n2)
