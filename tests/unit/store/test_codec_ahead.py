"""Bodies compressed ahead by a preparation worker (``codec.FRAME``): the store takes such a frame
only when it was made with the dictionary the store compresses with at that moment — never before
the dictionary is trained, never after a rolled-back training, never with another store's — and a
worker's frame is the store's own, byte for byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import zstandard

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import codec
from kubetrail.store.codec import FRAME, dictionary_compressor
from kubetrail.store.sqlite import Store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event


def recs(start: int, n: int) -> list:
    return [to_record(Decoded(make_event(f"id-{i}", name=f"obj-{i}", user=f"user-{i % 13}"), "event", f"t:{i}"),
                      SourceRef(stream="t")) for i in range(start, start + n)]


def _stored_frames(s: Store, start: int, n: int) -> list[bytes]:
    return [bytes(r[0]) for r in sql(s, "SELECT body FROM entries WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?",
                                     (start, n))]


def test_a_frame_of_the_current_dictionary_is_taken_and_no_other(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "TRAIN_AFTER", 100)
    s = Store.open(str(tmp_path))
    early = recs(0, 50)
    for r in early:  # before training: the store has no dictionary, the frame is not used
        r.__dict__[FRAME] = (0, b"not a frame")
    s.append(early)
    assert s.body_dictionary() is None
    s.append(recs(50, 100))  # trains
    dictionary = s.body_dictionary()
    assert dictionary is not None and sql(s, "SELECT dict_id FROM zstd_dictionaries").fetchone()[0] == dictionary[0]
    compress = dictionary_compressor(*dictionary).compress
    ahead, other, none = recs(150, 20), recs(170, 20), recs(190, 20)
    for r in ahead:
        r.__dict__[FRAME] = (dictionary[0], compress(r.body))
    for r in other:
        r.__dict__[FRAME] = (dictionary[0] + 1, b"made with another dictionary")
    s.append(ahead + other + none)
    frames = _stored_frames(s, 150, 60)
    assert frames[:20] == [compress(r.body) for r in ahead]
    assert frames[20:] == [s.codec._compressor.compress(r.body) for r in other + none]  # compressed here
    assert frames[:20] == [s.codec._compressor.compress(r.body) for r in ahead]  # the same bytes either way
    assert [s.decompress(f) for f in frames] == [r.body for r in ahead + other + none]
    assert all(FRAME not in r.__dict__ for r in ahead + other)  # taken off: records wait in the consumers
    reopened = Store.open(str(tmp_path), readonly=True)
    assert reopened.body_dictionary() == dictionary  # a store opened later gives the workers the same
    reopened.close()
    s.close()


def test_after_a_rolled_back_training_no_frame_of_that_dictionary_is_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "TRAIN_AFTER", 100)
    s = Store.open(str(tmp_path))
    s.append(recs(0, 60))

    def boom(conn: sqlite3.Connection, records: list) -> None:
        raise RuntimeError("hook failed")

    s.append_hooks.append(boom)
    seen: list = []
    real = s.codec._train

    def train() -> None:
        real()
        seen.append(s.body_dictionary())

    monkeypatch.setattr(s.codec, "_train", train)
    with pytest.raises(RuntimeError):
        s.append(recs(60, 60))  # trains inside the transaction, which fails
    assert seen and seen[0] is not None and s.body_dictionary() is None
    s.append_hooks.clear()
    later = recs(120, 10)
    for r in later:
        r.__dict__[FRAME] = (seen[0][0], b"made with the dictionary that was rolled back")
    s.append(later)  # the store has no dictionary now: compressed here (plain frames)
    frames = _stored_frames(s, 60, 10)
    assert all(zstandard.get_frame_parameters(f).dict_id == 0 for f in frames)
    assert [s.decompress(f) for f in frames] == [r.body for r in later]
    s.close()
