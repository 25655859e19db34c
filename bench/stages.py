"""CPU µs per event of each stage of the default pipeline, measured one stage at a time.

    .venv/bin/python bench/stages.py FILE [--repeat 3] [--batch 2000] [--prepare-only]

The stages run in pipeline order over the whole file, each timed with ``time.process_time`` (CPU
of this process, so other load on the machine inflates it less than wall time); the figure is the
minimum over ``--repeat`` runs (each in a fresh store). Stages:

* decode — read the file and decode each line into an event (``sources/files.py``), streamed;
* prepare — redaction, extraction and the record key together (``stages/extract.to_record``),
  streamed as the pipeline does, keeping nothing; the three parts are the differences between
  streamed runs that stop after each of them;
* store — ``store.append`` per batch without the trail hook: body compression, rows (entry v2,
  leaf hash), the SQLite insert and commit; rows and compression are also timed alone;
* tree — the trail's tree sync over the new leaves, plus one signed checkpoint per batch;
* detect, credentials — the two consumers over the stored batches, ``close`` included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson

from kubetrail.credentials.consumer import CredentialConsumer
from kubetrail.detect.consumer import DetectConsumer

try:
    from kubetrail.runtime import tune_gc
except ImportError:  # an older kubetrail (before issue 18): measured as it ran

    def tune_gc() -> None:
        return None
from kubetrail.record import SourceRef
from kubetrail.sources.files import Input
from kubetrail.stages import extract
from kubetrail.stages.identity import event_key
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.stages.secret_text import has_trigger
from kubetrail.store import open_store
from kubetrail.store.rows import row_head
from kubetrail.trail.checkpointer import Checkpointer
from kubetrail.trail.tree import sync_now


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def decode(path: str) -> list[Any]:
    inp = Input(path)
    try:
        return [d for d in inp.items() if hasattr(d, "event")]
    finally:
        inp.close()


def streamed(path: str, fn: Callable[[Any], Any]) -> float:
    """CPU seconds to decode every event of ``path`` and apply ``fn`` to each, keeping nothing."""
    inp = Input(path)
    t = time.process_time()
    try:
        for d in inp.items():
            if hasattr(d, "event"):
                fn(d)
    finally:
        inp.close()
    return time.process_time() - t


def one_run(path: str, batch: int, prepare_only: bool = False) -> dict[str, float]:
    t: dict[str, float] = {}
    source = SourceRef(stream=f"file:{path}")
    key = RedactionKey(b"k" * 32)

    def redact(d: Any) -> Any:
        extract.redact_event(d.event, scan_jwts=False, key=key)
        body = orjson.dumps(d.event)
        if has_trigger(body):  # what to_record calls
            extract.redact_event(d.event, scan_jwts=True, key=key)

    def extracted(d: Any) -> Any:
        redact(d)
        extract.extract_meta(d.event)

    def keyed(d: Any) -> Any:
        extracted(d)
        event_key(d.event)

    base = streamed(path, lambda d: None)
    t["decode"] = base
    t["  redact"] = streamed(path, redact) - base
    t["  extract"] = streamed(path, extracted) - base - t["  redact"]
    t["  key"] = streamed(path, keyed) - base - t["  redact"] - t["  extract"]
    # timed without keeping the records (the pipeline keeps one batch): a list of 100,000 records with
    # their parsed events would make the collector and the allocator part of the figure
    t["prepare"] = streamed(path, lambda d: extract.to_record(d, source, key)) - base
    if prepare_only:  # decode and prepare alone: a minute less per run on the 100,000-event files
        n = len(decode(path))
        return {k: v / n * 1e6 for k, v in t.items()} | {"events": n}
    records: list[Any] = []
    streamed(path, lambda d: records.append(extract.to_record(d, source, key)))  # for the stages below
    n = len(records)
    batches = [records[i:i + batch] for i in range(0, n, batch)]
    with tempfile.TemporaryDirectory() as tmp, open_store(tmp) as store:
        detect = DetectConsumer(store, track=True)  # before the appends: they start at leaf 0
        creds = CredentialConsumer(store)
        t["  compress"], bodies = _cpu(lambda: [store.codec.compress_many([r.body for r in b]) for b in batches])
        t["  rows"], _ = _cpu(lambda: [row_head(r) + (0, b"") for r in records])  # as SqliteStore._rows
        t["store"], _ = _cpu(lambda: [store.append(b) for b in batches])
        signer = Checkpointer(tmp, log=lambda m: None)
        signer._signer()
        t["tree"], _ = _cpu(lambda: sync_now(store))
        t["  sign (per batch)"], _ = _cpu(lambda: [signer.tick(store) for _ in batches])

        def run(consumer: Any) -> None:
            for b in batches:
                consumer.consume(b, store)
            consumer.close()

        t["detect"], _ = _cpu(lambda: run(detect))
        t["credentials"], _ = _cpu(lambda: run(creds))
    return {k: v / n * 1e6 for k, v in t.items()} | {"events": n}


def main() -> None:
    tune_gc()  # as the pipeline runs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--prepare-only", action="store_true", help="time decode and prepare only")
    a = ap.parse_args()
    size = os.path.getsize(a.path)
    runs = [one_run(a.path, a.batch, a.prepare_only) for _ in range(a.repeat)]
    n = int(runs[0]["events"])
    print(f"{a.path}: {n:,} events, {size / n:,.0f} bytes/event; python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.1f}; CPU µs/event, min (median) of {a.repeat}")
    total = 0.0
    for k in runs[0]:
        if k == "events":
            continue
        vals = [r[k] for r in runs]
        if not k.startswith(" "):
            total += min(vals)
        print(f"  {k:<20} {min(vals):8.1f}  ({statistics.median(vals):.1f})")
    print(f"  {'total':<20} {total:8.1f}  -> {1e6 / total:,.0f} events/s of one core")


if __name__ == "__main__":
    main()
