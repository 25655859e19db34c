"""Inclusion and consistency proofs in the JSON shapes of the CLI and the HTTP API.

``inclusion_proof_for(store, index)`` is what alerts and the credential inventory call to attach
evidence: the leaf hash, the audit path and the signed checkpoint whose root it reaches, so anyone
holding the verifier key can check it offline (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from kubetrail.errors import TrailError
from kubetrail.trail.protocols import ProofSource, TreeNodes  # noqa: F401 - re-exported (defined here before)
from kubetrail.trail.tree import Tree


class HasTrail(Protocol):
    @property
    def trail(self) -> ProofSource: ...


def inclusion_proof_for(store: HasTrail, index: int, size: int | None = None) -> dict[str, Any]:
    """Proof that leaf ``index`` is in the tree of ``size`` leaves (default: the latest checkpoint
    that covers it, else the current tree). ``checkpoint`` is the signed note for that size, or None
    when no checkpoint was signed at exactly that size yet."""
    trail = store.trail
    tree = Tree(trail)
    if size is None:
        latest = trail.latest_checkpoint()
        signed = latest[0] if latest is not None else None
        size = signed if signed is not None and index < signed else tree.size()
    if not 0 <= index < size:
        raise TrailError(f"leaf index {index} is not in a tree of size {size}")
    hashes = tree.inclusion(index, size)
    root = tree.root(size)
    return {"index": index, "size": size, "leaf_hash": tree.get(0, index).hex(), "root": root.hex(),
            "root_base64": base64.b64encode(root).decode(), "hashes": [h.hex() for h in hashes],
            "checkpoint": trail.checkpoint_at(size)}


def consistency_proof_for(store: HasTrail, old: int, new: int | None = None) -> dict[str, Any]:
    """Proof that the tree of ``old`` leaves is a prefix of the tree of ``new`` (0 -> n is empty)."""
    trail = store.trail
    tree = Tree(trail)
    new = tree.size() if new is None else new
    hashes = tree.consistency(old, new)
    old_root, new_root = tree.root(old), tree.root(new)
    return {"old": old, "new": new, "old_root": old_root.hex(), "new_root": new_root.hex(),
            "old_root_base64": base64.b64encode(old_root).decode(),
            "new_root_base64": base64.b64encode(new_root).decode(),
            "hashes": [h.hex() for h in hashes],
            "old_checkpoint": trail.checkpoint_at(old), "new_checkpoint": trail.checkpoint_at(new)}
