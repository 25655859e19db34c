"""Evidence shown as "verified": an inclusion proof checked against the latest signed checkpoint.

For each evidence leaf the check is done here, on every page view, from independent parts:

1. the latest checkpoint's signed note is opened with the trail's verifier key (DATA/trail.vkey):
   a forged or re-signed checkpoint fails here;
2. the leaf hash is recomputed from the stored entry (RFC 9162 §2.1: SHA-256(0x00 ‖ entry)), and
   the shown (redacted) body's SHA-256 is compared with the body hash inside the entry;
3. the audit path from the stored tree is verified from that leaf up to the checkpoint's root
   (``trail.merkle.verify_inclusion``).

``verified`` is true only when all three hold. A leaf newer than the latest checkpoint is shown as
"not yet checkpointed" (the next checkpoint, at most ``checkpoint_interval_secs`` away, covers it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubetrail.errors import KubetrailError
from kubetrail.store.api import Store
from kubetrail.trail.checkpoint import open_checkpoint
from kubetrail.trail.entry import decode_entry, leaf_hash
from kubetrail.trail.merkle import verify_inclusion
from kubetrail.trail.note import Verifier
from kubetrail.trail.proofs import inclusion_proof_for


def check_leaf(store: Store, verifier: Verifier, index: int) -> dict[str, Any]:
    """The inclusion proof of leaf ``index`` and whether it verifies (``verified``, ``reason``)."""
    latest = store.trail.latest_checkpoint()
    if latest is None or index >= latest[0]:
        return {"index": index, "verified": False, "reason": "not yet covered by a signed checkpoint"}
    size, _, note = latest
    try:
        cp = open_checkpoint(note, verifier)
    except KubetrailError as exc:
        return {"index": index, "verified": False, "reason": f"the latest checkpoint does not verify: {exc}"}
    rows = list(store.iter_entries(index, index + 1))
    if not rows:
        return {"index": index, "verified": False, "reason": "no entry at this index"}
    _, entry, _, body = rows[0]
    leaf = leaf_hash(entry)
    try:
        claimed = str(decode_entry(entry).get("body_sha256", ""))
    except ValueError:
        return {"index": index, "verified": False, "reason": "the stored entry cannot be read"}
    if body is not None and hashlib.sha256(body).hexdigest() != claimed:
        return {"index": index, "verified": False, "reason": "the stored body does not match its entry"}
    proof = inclusion_proof_for(store, index, size=size)
    ok = cp.size == size and verify_inclusion(index, size, leaf, [bytes.fromhex(h) for h in proof["hashes"]],
                                              cp.root)
    return {**proof, "leaf_hash": leaf.hex(), "checkpoint_origin": cp.origin, "body_pruned": body is None,
            "verified": ok, "reason": "" if ok else "the audit path does not lead to the signed root"}
