"""Inclusion and consistency proofs in the JSON shapes of the CLI and the HTTP API.

``inclusion_proof_for(store, index)`` is what alerts and the credential inventory call to attach
evidence: the leaf hash, the audit path and the signed checkpoint whose root it reaches, so anyone
holding the verifier key can check it offline (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

from kubetrail.errors import TrailError
from kubetrail.trail.tree import StoredTree


def _conn(store: Any) -> sqlite3.Connection:
    return store if isinstance(store, sqlite3.Connection) else store.connection


def checkpoint_at(conn: sqlite3.Connection, size: int) -> str | None:
    row = conn.execute("SELECT note FROM trail_checkpoints WHERE size = ? ORDER BY id DESC LIMIT 1",
                       (size,)).fetchone()
    return str(row[0]) if row else None


def latest_size(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT size FROM trail_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    return int(row[0]) if row else None


def inclusion_proof_for(store: Any, index: int, size: int | None = None) -> dict[str, Any]:
    """Proof that leaf ``index`` is in the tree of ``size`` leaves (default: the latest checkpoint
    that covers it, else the current tree). ``checkpoint`` is the signed note for that size, or None
    when no checkpoint was signed at exactly that size yet."""
    conn = _conn(store)
    tree = StoredTree(conn)
    if size is None:
        signed = latest_size(conn)
        size = signed if signed is not None and index < signed else tree.size()
    if not 0 <= index < size:
        raise TrailError(f"leaf index {index} is not in a tree of size {size}")
    hashes = tree.inclusion(index, size)
    root = tree.root(size)
    return {"index": index, "size": size, "leaf_hash": tree.get(0, index).hex(), "root": root.hex(),
            "root_base64": base64.b64encode(root).decode(), "hashes": [h.hex() for h in hashes],
            "checkpoint": checkpoint_at(conn, size)}


def consistency_proof_for(store: Any, old: int, new: int | None = None) -> dict[str, Any]:
    """Proof that the tree of ``old`` leaves is a prefix of the tree of ``new`` (0 -> n is empty)."""
    conn = _conn(store)
    tree = StoredTree(conn)
    new = tree.size() if new is None else new
    hashes = tree.consistency(old, new)
    old_root, new_root = tree.root(old), tree.root(new)
    return {"old": old, "new": new, "old_root": old_root.hex(), "new_root": new_root.hex(),
            "old_root_base64": base64.b64encode(old_root).decode(),
            "new_root_base64": base64.b64encode(new_root).decode(),
            "hashes": [h.hex() for h in hashes],
            "old_checkpoint": checkpoint_at(conn, old), "new_checkpoint": checkpoint_at(conn, new)}
