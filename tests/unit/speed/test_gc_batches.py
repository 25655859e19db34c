"""The garbage collector's per-batch freezing (``kubetrail.runtime.batch_done``): what a batch leaves
alive is not walked again, cyclic garbage is still freed by the periodic full collection, and the
pipeline calls it after every batch. Run in fresh interpreters: freezing is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_survivors_are_frozen_and_cycles_freed_by_the_full_collection() -> None:
    run("""
        import gc, weakref
        from kubetrail import runtime

        class Node:
            pass

        runtime.tune_gc()
        kept = [Node() for _ in range(1000)]  # alive across the batch (held records)
        cycle = Node(); cycle.me = cycle; ref = weakref.ref(cycle); del cycle  # cyclic garbage
        before = gc.get_freeze_count()
        runtime.batch_done()
        assert gc.get_freeze_count() >= before + 1000, (before, gc.get_freeze_count())
        assert not any(o is kept for o in gc.get_objects())  # no longer walked by collections
        gc.collect()
        assert ref() is not None  # frozen: ordinary collections leave it
        single = Node(); ref2 = weakref.ref(single); del single
        assert ref2() is None  # frozen or not, reference counting frees what is not a cycle
        for _ in range(runtime.FULL_COLLECT_BATCHES - 1):
            runtime.batch_done()
        assert ref() is None  # the full collection every FULL_COLLECT_BATCHES batches freed it
        assert len(kept) == 1000
    """)


def test_tune_gc_walks_only_the_young_generations_and_old_garbage_is_freed_later() -> None:
    run("""
        import gc, weakref
        from kubetrail import runtime

        class Node:
            pass

        cycle = Node(); cycle.me = cycle; ref = weakref.ref(cycle)
        gc.collect(); gc.collect()  # alive: now in the oldest generation
        del cycle  # cyclic garbage there
        walked = []
        gc.callbacks.append(lambda phase, info: phase == "start" and walked.append(info["generation"]))
        runtime.tune_gc()
        assert walked and max(walked) <= 1, walked
        assert ref() is not None  # frozen with the start-up heap
        for _ in range(runtime.FULL_COLLECT_BATCHES):
            runtime.batch_done()
        assert ref() is None  # the periodic full collection unfroze and freed it
    """)


def test_without_tune_gc_nothing_is_frozen() -> None:
    run("""
        import gc
        from kubetrail import runtime

        runtime.batch_done()
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == (700, 10, 10)
    """)


def test_the_pipeline_freezes_after_each_batch(tmp_path: object) -> None:
    run(f"""
        import gc
        from kubetrail import runtime
        from kubetrail.pipeline import Options, open_pipeline
        from kubetrail.record import Decoded, SourceRef
        from kubetrail.testing import make_event

        pipe = open_pipeline(Options(data_dir={str(tmp_path)!r}, workers=0), batch_size=10)
        calls = []
        done = runtime.batch_done
        runtime.batch_done = lambda: (calls.append(gc.get_freeze_count()), done())
        import kubetrail.pipeline as p
        p.batch_done = runtime.batch_done
        items = [Decoded(make_event(f"id-{{i}}", name=f"p{{i}}"), "event", str(i)) for i in range(35)]
        pipe.ingest_items(items, SourceRef(stream="file:t"))
        pipe.close()
        pipe.store.close()
        assert len(calls) == 4, calls  # 10 + 10 + 10 + 5
        assert gc.get_freeze_count() > calls[0]
    """)
