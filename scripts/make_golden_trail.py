#!/usr/bin/env python3
"""Build tests/data/trail/: a small golden trail that the tamper tests copy and damage.

    .venv/bin/python scripts/make_golden_trail.py [OUT_DIR]

Deterministic inputs: 300 synthetic audit events ingested through the real pipeline in batches of
64 (so there are checkpoints at 64, 128, 192, 256 and 300), one timer checkpoint at the end, a
witness directory, and a published TEST key (never use it for a real trail). Besides the store it
writes ``vectors.json``: every entry header, leaf hash and checkpoint, and a few proofs, so someone
re-implementing docs/specs/trail-format.md can test against it without kubetrail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys

from kubetrail.pipeline import Options, Pipeline, RejectsFile, build_consumers
from kubetrail.record import Decoded, SourceRef
from kubetrail.store.sqlite import Store
from kubetrail.testing import make_event
from kubetrail.trail import keys
from kubetrail.trail.note import Signer
from kubetrail.trail.proofs import consistency_proof_for, inclusion_proof_for

ORIGIN = "golden.kubetrail.test/trail"
SEED = hashlib.sha256(b"kubetrail golden trail TEST key - public, never use for a real trail").digest()
N = 300
BATCH = 64


def events() -> list[dict[str, object]]:
    verbs = ["get", "list", "create", "delete", "patch", "watch"]
    out = []
    for i in range(N):
        t = f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}.{i:06d}Z"
        out.append(make_event(f"00000000-0000-0000-0000-{i:012d}", verb=verbs[i % len(verbs)],
                              user=f"user-{i % 7}", resource=["pods", "secrets", "configmaps"][i % 3],
                              namespace=f"ns-{i % 4}", name=f"obj-{i}", time=t))
    return out


def build(out: str) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    data, witness = os.path.join(out, "data"), os.path.join(out, "witness")
    os.makedirs(data)
    signer = Signer(ORIGIN, SEED)
    with open(os.path.join(data, keys.KEY_FILE), "w") as fh:
        fh.write(signer.encode() + "\n")
    os.chmod(os.path.join(data, keys.KEY_FILE), 0o600)
    with open(os.path.join(data, keys.VKEY_FILE), "w") as fh:
        fh.write(signer.verifier().encode() + "\n")
    store = Store.open(data)
    options = Options(data_dir=data, detect=False, witness_dir=witness)
    pipe = Pipeline(store, build_consumers(store, options), RejectsFile(data), batch_size=BATCH)
    source = SourceRef(cluster="golden", node="node-a", stream="audit-file")
    pipe.ingest_items((Decoded(e, "event", f"golden:{i}") for i, e in enumerate(events())), source)
    pipe.tick()  # the timer checkpoint: same size, signed again
    pipe.close()
    conn = store.connection
    entries = [{"index": i, "entry": e.decode(), "leaf_hash": h.hex()} for i, e, h, _ in store.iter_entries()]
    notes = [str(n) for (n,) in conn.execute("SELECT note FROM trail_checkpoints ORDER BY id")]
    vectors = {
        "_about": "kubetrail golden trail (docs/specs/trail-format.md); TEST key, public on purpose",
        "origin": ORIGIN, "vkey": signer.verifier().encode(), "skey_TEST_ONLY": signer.encode(),
        "entries": entries, "checkpoints": notes,
        "inclusion": [inclusion_proof_for(store, i, N) for i in (0, 1, 63, 64, 150, 255, 256, 299)],
        "consistency": [consistency_proof_for(store, m, N) for m in (0, 1, 64, 100, 256, 300)],
        "body_sha256_of_entry_7": hashlib.sha256(store.get("7").body).hexdigest() if store.get("7") else None,
        "root_base64": base64.b64encode(bytes.fromhex(inclusion_proof_for(store, 0, N)["root"])).decode(),
    }
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    with open(os.path.join(out, "vectors.json"), "w") as fh:
        json.dump(vectors, fh, indent=1)
        fh.write("\n")
    return vectors


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                                 "data", "trail")
    v = build(os.path.abspath(target))
    print(f"golden trail: {len(v['entries'])} entries, {len(v['checkpoints'])} checkpoints -> {target}")
