"""Store + tree of two kubetrail builds, run back to back (A/B on shared cores).

    .venv/bin/python bench/store_ab.py FILE [--pairs 3] [--before SRC]

Times what ``bench/stages.py`` calls ``store`` and ``tree`` — ``store.append`` per 2,000-record
batch without the trail hook (compression, rows, the SQLite insert and commit), then the tree sync
and one signed checkpoint per batch — over the records of FILE (prepared by the real pipeline, not
timed), in a fresh store whose body dictionary is trained before timing. CPU µs/event
(``time.process_time``). With ``--before SRC`` (a ``src`` directory of another build, e.g.
``git archive <commit> src | tar -x -C DIR``) each pair runs that build and this one in separate
processes, one after the other, so the other load on the two shared cores weighs on both alike;
the figures are the minimum over the pairs. Without it, this build once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def child(path: str) -> None:
    from kubetrail.record import SourceRef
    from kubetrail.sources.files import Input
    from kubetrail.stages import extract
    from kubetrail.stages.redaction_key import RedactionKey
    from kubetrail.store import open_store
    from kubetrail.trail.checkpointer import Checkpointer
    from kubetrail.trail.tree import sync_now

    try:
        from kubetrail.runtime import tune_gc
    except ImportError:  # an older kubetrail
        def tune_gc() -> None:
            return None

    tune_gc()
    source = SourceRef(stream=f"file:{path}")
    key = RedactionKey(b"k" * 32)
    inp = Input(path)
    try:
        recs = [extract.to_record(d, source, key) for d in inp.items() if hasattr(d, "event")]
    finally:
        inp.close()
    n = len(recs)
    batches = [recs[i:i + 2000] for i in range(0, n, 2000)]
    with tempfile.TemporaryDirectory() as tmp, open_store(tmp) as store:
        store.codec.compress_many([r.body for b in batches[:2] for r in b])  # trained before timing
        t = time.process_time()
        for b in batches:
            store.append(b)
        t_store = time.process_time() - t
        signer = Checkpointer(tmp, log=lambda m: None)
        signer._signer()
        t = time.process_time()
        sync_now(store)
        t_tree = time.process_time() - t
        t = time.process_time()
        for _ in batches:
            signer.tick(store)
        t_sign = time.process_time() - t
    print(f"{t_store / n * 1e6:.1f} {t_tree / n * 1e6:.1f} {t_sign / n * 1e6:.1f} {n}")


def run(src: str, path: str) -> list[float]:
    env = dict(os.environ, PYTHONPATH=src)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, __file__, path, "--child"], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return [float(x) for x in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--before", default="", help="the other build's src directory")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.path)
        return
    builds = [("before", a.before), ("after", SRC)] if a.before else [("this", SRC)]
    best: dict[str, list[float]] = {}
    print(f"{a.path}: CPU µs/event (store = compression + rows + SQLite, tree = sync, sign = per batch)")
    for i in range(a.pairs if a.before else 1):
        for name, src in builds:
            store, tree, sign, n = run(src, a.path)
            print(f"  pair {i + 1} {name:<6} store {store:6.1f}  tree {tree:5.1f}  sign {sign:4.1f}  "
                  f"sum {store + tree + sign:6.1f}   ({int(n):,} events, load {os.getloadavg()[0]:.1f})", flush=True)
            prev = best.get(name)
            best[name] = [store, tree, sign] if prev is None else [min(x, y) for x, y in zip(prev, [store, tree, sign], strict=True)]
    for name, (store, tree, sign) in best.items():
        print(f"  min {name:<6} store {store:6.1f}  tree {tree:5.1f}  sign {sign:4.1f}  sum {store + tree + sign:6.1f}")


if __name__ == "__main__":
    main()
