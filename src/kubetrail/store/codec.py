"""Body compression: zstd frames, with a dictionary trained on the store's own first events.

Audit events are small (about 1 KiB) and alike, so plain per-event compression gains little
(~0.6x) while a trained dictionary gets ~0.1–0.25x and is faster. Format, for anyone reading the
store without kubetrail:

* ``entries.body`` is one zstd frame of the redacted event JSON.
* A frame whose header names a dictionary id was compressed with the row of ``zstd_dictionaries``
  that has that ``dict_id``; a frame without one needs no dictionary.
* Dictionaries are never changed or deleted, so every body stays readable.

The trail hashes the *uncompressed* body, so the codec can change without touching any leaf.

A dictionary is trained inside the append transaction that crosses TRAIN_AFTER bodies. If that
transaction rolls back, the dictionary row is gone, so ``Store.append`` restores the codec's state
from ``snapshot()``: nothing is ever compressed with a dictionary that is not committed. A damaged
dictionary row (truncated, say) is set aside at load; only the bodies that need it fail to open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import zstandard

from kubetrail.record import Record
from kubetrail.store.db import Db

TRAIN_AFTER = 2000  # bodies seen before a dictionary is trained
DICT_BYTES = 32 * 1024
# zstd level of new frames. With the trained dictionary, level 1 compresses a 2.9 KB event in ~3.7 µs
# where level 3 took ~4.4, for ~4% more bytes (issue 18). The level is not in the format: every frame
# written at any level stays readable.
LEVEL = 1
# A record's body compressed ahead by a preparation worker (kubetrail.workers): ``(dict_id, frame)``
# in ``record.__dict__``, taken by ``compress_many`` only when ``dict_id`` is the dictionary it would
# compress with itself.
FRAME = "_frame"


def dictionary_compressor(dict_id: int, data: bytes) -> zstandard.ZstdCompressor:
    """The compressor ``BodyCodec`` uses with this dictionary, for a process that has no store."""
    d = zstandard.ZstdCompressionDict(data)
    if d.dict_id() != dict_id:
        raise ValueError(f"zstd dictionary {dict_id} is not the one given (its id is {d.dict_id()})")
    d.precompute_compress(level=LEVEL)
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=d)


def compress_together(compressor: zstandard.ZstdCompressor, bodies: list[bytes]) -> list[Any]:
    """The bodies' frames, in order, compressed in one call that runs without the GIL (zstandard's C
    backend: ``multi_compress_to_buffer``, the same frames as one ``compress`` per body; what it gives
    are buffers, bound by SQLite as BLOBs), so a thread beside the pipeline's can do it (the SQLite
    store's commit thread). One call per body where the backend lacks it, and for bodies that are all
    empty (which it refuses)."""
    many = getattr(compressor, "multi_compress_to_buffer", None)
    if many is not None and any(bodies):
        return list(many(bodies))
    return [compressor.compress(b) for b in bodies]


class BodyCodec:
    def __init__(self, conn: Db) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._plain = zstandard.ZstdCompressor(level=LEVEL)
        self._compressor = self._plain
        self._decompressors: dict[int, zstandard.ZstdDecompressor] = {0: zstandard.ZstdDecompressor()}
        self._samples: list[bytes] = []
        self.broken: dict[int, str] = {}  # dict_id -> why it cannot be used
        self.dictionary: tuple[int, bytes] | None = None  # (id, data) new frames are compressed with
        rows = conn.execute("SELECT dict_id, data FROM zstd_dictionaries ORDER BY created_ns").fetchall()
        for dict_id, data in rows:
            loaded = self._load(dict_id, data)
            if loaded is not None:
                self._decompressors[dict_id], self._compressor = loaded
                self.dictionary = (int(dict_id), bytes(data))
        self.trained = bool(rows)

    def _load(self, dict_id: int, data: Any) -> tuple[zstandard.ZstdDecompressor, zstandard.ZstdCompressor] | None:
        """Both halves of a stored dictionary, checked with a round trip; None (and ``broken``) if damaged."""
        try:
            d = zstandard.ZstdCompressionDict(bytes(data))
            comp = zstandard.ZstdCompressor(level=LEVEL, dict_data=d)
            dec = zstandard.ZstdDecompressor(dict_data=d)
            if d.dict_id() != dict_id or dec.decompress(comp.compress(b"kubetrail")) != b"kubetrail":
                raise zstandard.ZstdError("its id or content does not match")
        except (zstandard.ZstdError, TypeError) as exc:
            self.broken[int(dict_id)] = str(exc)
            return None
        return dec, comp

    def snapshot(self) -> tuple[Any, ...]:
        """The state to restore if the transaction about to use the codec rolls back."""
        return (self._compressor, dict(self._decompressors), self.trained,
                [] if self.trained else list(self._samples), self.dictionary)

    def restore(self, state: tuple[Any, ...]) -> None:
        self._compressor, self._decompressors, self.trained, self._samples, self.dictionary = state

    def compress_records(self, records: Sequence[Record]) -> list[bytes]:
        """``compress_many`` of the records' bodies, taking off each record the frame a worker may have
        left (``FRAME``): a record may wait in the consumers long after, and a retried append
        compresses here what it no longer carries."""
        return self.compress_many([r.body for r in records], [r.__dict__.pop(FRAME, None) for r in records])

    def compress_many(self, bodies: list[bytes], ahead: list[tuple[int, bytes] | None] | None = None) -> list[bytes]:
        """Called inside the append transaction, so a new dictionary commits with its first use.
        ``ahead``: per body, a frame a worker compressed (``FRAME``), used when it was made with the
        dictionary this codec compresses with now (any other, or none: compressed here)."""
        if not self.trained:
            self._sample(bodies[: TRAIN_AFTER - len(self._samples)])
        compress = self._compressor.compress
        if ahead is None or self.dictionary is None:
            return [compress(b) for b in bodies]
        current = self.dictionary[0]
        return [f[1] if f is not None and f[0] == current else compress(b) for b, f in zip(bodies, ahead, strict=True)]

    def batch(self, records: Sequence[Record]) -> tuple[zstandard.ZstdCompressor, int | None]:
        """``compress_records`` for a caller that walks the records once itself (``SqliteStore._rows``:
        a batch's records have gone cold in cache by the time a second pass reaches them): the bodies
        sampled (a dictionary trained), then the compressor (used after this call, on the store's commit
        thread, while nothing else compresses) and the id of the dictionary a worker's
        frame (``FRAME``) must have been made with to be taken (None: none is). The caller takes
        ``FRAME`` off each record, as ``compress_records`` does."""
        if not self.trained:
            self._sample([r.body for r in records[: TRAIN_AFTER - len(self._samples)]])
        return self._compressor, None if self.dictionary is None else self.dictionary[0]

    def _sample(self, bodies: Sequence[bytes]) -> None:
        self._samples.extend(bodies)
        if len(self._samples) >= TRAIN_AFTER:
            self._train()

    def _train(self) -> None:
        try:
            # fixed COVER parameters: without k/d zstd searches for them, ~190 ms of CPU on 2,000 RequestResponse
            # bodies at every fresh store's first batches (issue 18); these cost ~50 ms and compress as
            # well (ratio 0.088 vs 0.090 on the bench file's next 4,000 bodies, level 1)
            d = zstandard.train_dictionary(DICT_BYTES, self._samples, k=2048, d=8)
        except zstandard.ZstdError:
            self._samples.clear()  # too little variety to train on: keep plain frames
            self.trained = True
            return
        d.precompute_compress(level=LEVEL)
        self._conn.execute("INSERT INTO zstd_dictionaries (dict_id, data, created_ns) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (d.dict_id(), d.as_bytes(), time.time_ns()))
        self._decompressors[d.dict_id()] = zstandard.ZstdDecompressor(dict_data=d)
        self._compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=d)
        self.dictionary = (d.dict_id(), d.as_bytes())
        self._samples.clear()
        self.trained = True

    def decompress(self, frame: bytes) -> bytes:
        dict_id = zstandard.get_frame_parameters(frame).dict_id
        dec = self._decompressors.get(dict_id)
        if dec is None:  # another process trained it after we opened the store
            if dict_id in self.broken:
                raise ValueError(f"body needs zstd dictionary {dict_id}, which is damaged: {self.broken[dict_id]}")
            row = self._conn.execute("SELECT data FROM zstd_dictionaries WHERE dict_id = ?", (dict_id,)).fetchone()
            if row is None:
                raise ValueError(f"body needs zstd dictionary {dict_id}, which the store does not have")
            loaded = self._load(dict_id, row[0])
            if loaded is None:
                raise ValueError(f"body needs zstd dictionary {dict_id}, which is damaged: {self.broken[dict_id]}")
            dec = self._decompressors[dict_id] = loaded[0]
        with self._lock:
            return dec.decompress(frame)
