"""The SQLite store's rows (issue 18): a row head + (leaf index, body) inserted with one statement
per record kind whose always-empty values are literals (``rows.insert_sql``), built in one pass over
the batch (``SqliteStore._rows``). The stored rows must be the ones the previous path wrote: every
column of ``INSERT_COLUMNS`` bound from a 34-value head. That path is kept here as the reference
and both stores are compared column by column, value and SQLite type, over realistic and hostile
records (NULL code, empty strings, log lines, non-ASCII, large integers, batches that mix kinds)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from kubetrail.record import Decoded, LogMeta, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store.base import first_of_each_key
from kubetrail.store.codec import FRAME, dictionary_compressor
from kubetrail.store.rows import (
    _LOG_FIELDS,
    INSERT_COLUMNS,
    LOG_COLUMNS,
    StoredLogMeta,
    StoredMeta,
    _meta_encoder,
    row,
    row_head,
)
from kubetrail.store.sqlite import SqliteStore
from kubetrail.testing import make_event
from kubetrail.trail.entry import encode_new_entry, leaf_hash

SRC = SourceRef(cluster="c", node="n", stream="s")


# -- the reference: rows as the store wrote them before ------------------------------------------------
def reference_head(r: Record) -> tuple[Any, ...]:
    """``row_head`` before issue 18's row statements: 33 values, the empty ones included."""
    m = r.meta
    if isinstance(m, LogMeta):
        meta = StoredLogMeta(**{f: getattr(m, f) for f in _LOG_FIELDS}, redactions=r.redactions)
        cols: tuple[Any, ...] = (r.key, r.time, r.kind, r.source.label(), r.seq, r.format, "", "", "", "", "", "[]",
                                 "", "", "", "", m.namespace, m.pod, None, "[]", "", "", "", "",
                                 _meta_encoder.encode(meta))
        logs: tuple[Any, ...] = tuple(getattr(m, c) for c in LOG_COLUMNS)
    else:
        cols = (
            r.key, r.time, r.kind, r.source.label(), r.seq, r.format, m.audit_id, m.stage, m.level, m.verb,
            m.user, orjson.dumps(m.groups).decode(), m.impersonated_user, m.resource, m.subresource,
            m.api_group, m.namespace, m.name, m.code, orjson.dumps(m.source_ips).decode(),
            m.source_ips[-1] if m.source_ips else "", m.user_agent, m.request_uri, m.credential_id,
            _meta_encoder.encode(StoredMeta(m.uid, m.impersonated_groups, m.api_version, m.request_received,
                                            m.stage_time, m.lossy, r.redactions)),
        )
        logs = ("",) * len(LOG_COLUMNS)
    body_hash = hashlib.sha256(r.body).digest()
    return (*cols, *logs, b"", leaf_hash(encode_new_entry(cols, body_hash)), body_hash)


def reference_heads(r: Record) -> tuple[int, int | None]:
    """key_head, audit_head as docs/specs/event-identity.md defines them (migration 0016)."""
    md5 = lambda text: int(hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()[:15], 16)  # noqa: E731
    key = r.key
    hexed = len(key) >= 15 and all(c in "0123456789abcdef" for c in key[:15])
    audit_id = getattr(r.meta, "audit_id", "") if r.kind == "audit" else ""
    return (int(key[:15], 16) if hexed else (1 << 60) | md5(key)), (md5(audit_id) if audit_id else None)


def reference_row(r: Record, index: int, compressed_body: bytes) -> tuple[Any, ...]:
    head = reference_head(r)
    return (index, *head[:-1], compressed_body, head[-1], *reference_heads(r))


REFERENCE_INSERT = (f"INSERT INTO entries ({', '.join(INSERT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))})")


# -- records --------------------------------------------------------------------------------------------
def audit(i: int, **kw: Any) -> Record:
    ev = make_event(f"{i:08d}-rows", user=["alice", "ünïcode ✓\u2028", ""][i % 3], name=f"o-{i}\x01",
                    time=f"2024-05-01T00:00:{i % 60:02d}Z", **kw)
    return to_record(Decoded(ev, "event", f"p:{i}"), SRC)


def log_line(i: int, kind: str = "container", **kw: Any) -> Record:
    meta = LogMeta(**{"node": "n1", "namespace": "ns", "pod": f"p\u2029{i}", "labels": {"a": "ü\x7f"}, **kw})
    return Record(kind=kind, key=f"log-{i}", time=i, source=SourceRef(stream="s"), seq=i, format="cri",
                  meta=meta, body=f"line {i} ✓".encode())


def hostile() -> list[Record]:
    out = [audit(i) for i in range(6)]
    nocode = audit(10)
    nocode.meta.code = None  # type: ignore[union-attr]  # NULL, not 0
    out.append(nocode)
    empty = audit(11, groups=[])
    empty.meta.source_ips = []  # type: ignore[union-attr]
    empty.meta.user_agent = empty.meta.request_uri = ""  # type: ignore[union-attr]
    out.append(empty)
    big = audit(12)
    big.time, big.seq = 2**63 - 1, 2**62 + 3
    big.meta.code = -(2**63)  # type: ignore[union-attr]
    out.append(big)
    out.append(Record(kind="audit", key="odd-\u00e9\x00", time=-1, source=SourceRef(), seq=0, format="",
                      meta=audit(13).meta, body=b""))
    out += [log_line(20), log_line(21, "node", unit="kubelet", stream="info"),
            log_line(22, "k8s_event", namespace="", pod=""),
            log_line(23, workload="deployment/shop/web", pod_uid="u-1", container="c", stream="stdout",
                     node="ñode", restart=2**40),
            log_line(24, node="", stream="")]  # a log line whose LOG_COLUMNS are all empty: still bound
    out += [audit(30), log_line(31), audit(32), audit(33), log_line(34), log_line(35)]  # runs of each kind
    return out


def stored(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    cols = [c[1] for c in conn.execute("PRAGMA table_info(entries)")]
    typed = ", ".join(f"{c}, typeof({c})" for c in cols)
    return conn.execute(f"SELECT {typed} FROM entries ORDER BY leaf_index").fetchall()


def reference_store(tmp: Path, records: list[Record]) -> list[tuple[Any, ...]]:
    """The records' rows inserted as before (bodies: the plain level-1 frames an untrained store makes)."""
    plain = zstandard.ZstdCompressor(level=1)
    with SqliteStore.open(str(tmp)) as s, s.transaction():
        s._conn.executemany(REFERENCE_INSERT, [reference_row(r, i, plain.compress(r.body))
                                               for i, r in enumerate(records)])
    return stored(tmp / "kubetrail.db")


@pytest.mark.parametrize("batches", ["realistic", "hostile", "logs-only", "one-per-batch", "few-variables",
                                     "deferred"])
def test_stored_rows_are_the_reference_rows(tmp_path: Path, batches: str) -> None:
    """Also: a SQLite that takes few variables per statement (each run of one kind split into
    statements of 2 rows, the last one padded: ``rows.InsertStatement``), and appends whose rows go
    in on the commit thread (``append_deferred``)."""
    records = {"realistic": lambda: [audit(i) for i in range(40)], "hostile": hostile,
               "logs-only": lambda: [log_line(i) for i in range(5)],
               "one-per-batch": hostile, "few-variables": hostile, "deferred": hostile}[batches]()
    with SqliteStore.open(str(tmp_path / "new")) as s:
        if batches == "few-variables":
            s._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 2 rows of 31 or 37 values
        if batches == "one-per-batch":
            for r in records:
                s.append([r])
        elif batches == "deferred":
            s.append_deferred(records[:7]).result()
            s.append_deferred(records[7:]).result()
        else:
            s.append(records[:7])
            s.append(records[7:])
    new = stored(tmp_path / "new" / "kubetrail.db")
    ref = reference_store(tmp_path / "ref", records)
    assert len(new) == len(records)
    assert new == ref


def test_worker_heads_give_the_same_rows(tmp_path: Path) -> None:
    """Heads and frames left on the records (as ``workers.unpack`` does) are taken, and give the rows
    the store would build itself; a frame made with another dictionary is not taken."""
    samples = [audit(i).body for i in range(300)]
    dictionary = zstandard.train_dictionary(8192, samples, k=512, d=8)
    dict_id, data = dictionary.dict_id(), dictionary.as_bytes()
    compress = dictionary_compressor(dict_id, data).compress
    records = hostile()
    for i, r in enumerate(records):
        r.__dict__["_row_head"] = row_head(r)
        r.__dict__[FRAME] = (dict_id if i % 3 else dict_id + 1, compress(r.body) if i % 3 else b"not taken")
    with SqliteStore.open(str(tmp_path / "new")) as s:
        s.codec.dictionary = (dict_id, data)  # as if trained on this dictionary
        s.codec._compressor = dictionary_compressor(dict_id, data)
        s.codec.trained = True
        s.append(records)
    assert all("_row_head" not in r.__dict__ and FRAME not in r.__dict__ for r in records)
    new = stored(tmp_path / "new" / "kubetrail.db")
    with SqliteStore.open(str(tmp_path / "ref")) as s, s.transaction():
        s._conn.executemany(REFERENCE_INSERT, [reference_row(r, i, compress(r.body)) for i, r in enumerate(records)])
    assert new == stored(tmp_path / "ref" / "kubetrail.db")


def test_row_is_the_reference_row() -> None:
    """``row`` (the PostgreSQL store's COPY rows, ``INSERT_COLUMNS``) from the shorter heads."""
    for i, r in enumerate(hostile()):
        r.leaf_index = i
        assert row(r, b"frame") == reference_row(r, i, b"frame")
        r.__dict__["_row_head"] = row_head(r)
        assert row(r, b"frame") == reference_row(r, i, b"frame")
        assert "_row_head" not in r.__dict__


def reference_unique(records: list[Record]) -> list[Record]:
    """``append_deferred``'s dedup before issue 18's C count."""
    seen: set[str] = set()
    unique = []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            unique.append(r)
    return unique


def test_duplicate_keys_keep_the_first(tmp_path: Path) -> None:
    records = [audit(i) for i in range(6)]
    batch = records[:3] + [audit(1), audit(4), audit(1)] + records[3:]
    for case in (batch, records, [], [records[0], records[0]], batch[::-1]):
        assert list(map(id, first_of_each_key(case))) == list(map(id, reference_unique(case)))
    assert first_of_each_key(records) is not records  # the caller's list is not kept
    with SqliteStore.open(str(tmp_path)) as s:
        result = s.append(batch)
    assert list(map(id, result.stored)) == list(map(id, reference_unique(batch))) and result.duplicates == 3


def test_bodies_compressed_together_are_the_frames_of_one_call_each() -> None:
    """``codec.compress_together`` (the commit thread's one call) gives each body's own frame, also where
    the backend has no batch call and for a batch of empty bodies, which the batch call refuses."""
    from kubetrail.store.codec import compress_together

    plain = zstandard.ZstdCompressor(level=1)
    bodies = [audit(i).body for i in range(5)] + [b""]

    class OneByOne:  # zstandard's cffi backend: no multi_compress_to_buffer
        compress = plain.compress

    for compressor, batch in ((plain, bodies), (OneByOne(), bodies), (plain, [b"", b""])):
        got = [bytes(f) for f in compress_together(compressor, batch)]  # type: ignore[arg-type]
        assert got == [plain.compress(b) for b in batch]
