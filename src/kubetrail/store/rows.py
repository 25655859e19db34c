"""A record as an ``entries`` row and back, the same for every engine.

The row's columns are the record's indexed fields; ``meta`` holds the rest (``StoredMeta``), the
body is a zstd frame (store/codec.py). A v2 trail entry is rebuilt from exactly the stored values
(trail/entry.py), so the leaf covers every column a query filters on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import orjson

from kubetrail.record import LOG_KINDS, AuditMeta, LogMeta, Record, Redaction, SourceRef
from kubetrail.store.heads import audit_head, key_head
from kubetrail.trail.entry import ENTRY_COLUMNS, encode_entry_v2, encode_new_entry, leaf_hash

MAX_INDEX = (1 << 63) - 1  # both engines' integers are 64-bit signed


class StoredMeta(msgspec.Struct, omit_defaults=True, array_like=True):
    """The part of a record's metadata that has no column of its own (columns hold the rest)."""

    uid: str = ""
    impersonated_groups: list[str] = []
    api_version: str = ""
    request_received: int | None = None
    stage_time: int | None = None
    lossy: list[str] = []
    redactions: list[Redaction] = []


class StoredLogMeta(msgspec.Struct, omit_defaults=True, kw_only=True):
    """``entries.meta`` of a log line (kinds ``container``, ``node``, ``k8s_event``): a JSON object with
    every ``LogMeta`` field that is not empty, plus the redactions (docs/specs/trail-format.md)."""

    node: str = ""
    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    container: str = ""
    container_id: str = ""
    stream: str = ""
    workload: str = ""
    unit: str = ""
    image: str = ""
    image_id: str = ""
    labels: dict[str, str] = {}
    node_labels: dict[str, str] = {}
    namespace_labels: dict[str, str] = {}
    restart: int | None = None
    marks: list[str] = []
    redactions: list[Redaction] = []


_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(StoredMeta)
_log_meta_decoder = msgspec.json.Decoder(StoredLogMeta)
_LOG_FIELDS = tuple(f for f in StoredLogMeta.__struct_fields__ if f != "redactions")
# The copies of log metadata that `logs` filters on (store/migrations/0009_log_lines.sql), after COLUMNS.
LOG_COLUMNS = ("node", "pod_uid", "container", "workload", "unit", "stream")

COLUMNS = ("leaf_index, key, time, kind, source, seq, format, meta, body, audit_id, stage, level, verb, "
           "username, groups_json, impersonated, resource, subresource, api_group, namespace, name, code, "
           "source_ips, user_agent, request_uri, credential_id")
# The integer heads of the key and the auditID (store/heads.py, migration 0016), last in a row head.
HEAD_KEYS = ("key_head", "audit_head")
INSERT_COLUMNS = ("leaf_index", *ENTRY_COLUMNS, *LOG_COLUMNS, "entry", "leaf_hash", "body", "body_sha256", *HEAD_KEYS)
ENTRY_SELECT = f"leaf_index, entry, leaf_hash, body, body_sha256, {', '.join(ENTRY_COLUMNS)}"


def row(r: Record, compressed_body: bytes) -> tuple[Any, ...]:
    """The row (``INSERT_COLUMNS``), with its v2 entry rebuilt from exactly the values stored. A row
    head a preparation worker left on the record is taken off it: the record may wait in the
    consumers' reorder buffers long after (a retried append builds the head again, the same)."""
    head = r.__dict__.pop("_row_head", None) or row_head(r)
    return (r.leaf_index, *head[:_N_ENTRY], *(head[_N_ENTRY:-4] or _NO_LOG_COLUMNS), b"", head[-4], compressed_body,
            *head[-3:])


def row_head(r: Record) -> tuple[Any, ...]:
    """Everything of ``row`` but the leaf index, the compressed body and the always empty values:
    ``HEAD_COLUMNS`` for an audit record, ``LOG_HEAD_COLUMNS`` for a log line (the leaf hash, the body's
    SHA-256 and the two integer heads last).

    None of it depends on the leaf index, so it can be computed before the record reaches the store
    (the preparation workers do, ``kubetrail.workers``) and left on the record as ``_row_head``. The
    empty values (an audit record's ``LOG_COLUMNS``, every new row's v1 ``entry``) are not in it: the
    SQLite store writes them as literals of its statements (``insert_sql``) rather than binding seven
    values per row, and they never cross from a worker."""
    m = r.meta
    if isinstance(m, LogMeta):
        return _log_row(r, m)
    cols = (
        r.key, r.time, r.kind, r.source.label(), r.seq, r.format, m.audit_id, m.stage, m.level, m.verb,
        m.user, orjson.dumps(m.groups).decode(), m.impersonated_user, m.resource, m.subresource, m.api_group,
        m.namespace, m.name, m.code, orjson.dumps(m.source_ips).decode(),
        m.source_ips[-1] if m.source_ips else "", m.user_agent, m.request_uri, m.credential_id,
        _meta_encoder.encode(StoredMeta(m.uid, m.impersonated_groups, m.api_version, m.request_received,
                                        m.stage_time, m.lossy, r.redactions)),
    )
    body_hash = hashlib.sha256(r.body).digest()
    entry = encode_new_entry(cols, body_hash)
    return (*cols, leaf_hash(entry), body_hash, key_head(r.key), audit_head(m.audit_id))


_N_ENTRY = len(ENTRY_COLUMNS)
_NO_LOG_COLUMNS = ("",) * len(LOG_COLUMNS)


def _log_row(r: Record, m: LogMeta) -> tuple[Any, ...]:
    """A log line's row head: the audit columns empty, ``namespace``/``name`` = the pod's, the rest in
    ``meta`` (covered by the leaf) and copied into ``LOG_COLUMNS`` for the indexes."""
    meta = StoredLogMeta(**{f: getattr(m, f) for f in _LOG_FIELDS}, redactions=r.redactions)
    cols = (r.key, r.time, r.kind, r.source.label(), r.seq, r.format, "", "", "", "", "", "[]", "", "", "", "",
            m.namespace, m.pod, None, "[]", "", "", "", "", _meta_encoder.encode(meta))
    body_hash = hashlib.sha256(r.body).digest()
    entry = encode_new_entry(cols, body_hash)
    return (*cols, *(getattr(m, c) for c in LOG_COLUMNS), leaf_hash(entry), body_hash, key_head(r.key), None)


# The SQLite store's rows: a row head (``row_head``) + (leaf index, compressed body), one statement per
# head length, the values a head leaves out written as literals ('' is TEXT, X'' a zero-length BLOB: the
# same values and types ``row`` binds).
HEAD_COLUMNS = (*ENTRY_COLUMNS, "leaf_hash", "body_sha256", *HEAD_KEYS)
LOG_HEAD_COLUMNS = (*ENTRY_COLUMNS, *LOG_COLUMNS, "leaf_hash", "body_sha256", *HEAD_KEYS)


class InsertStatement:
    """A SQLite ``INSERT`` of one row shape (the bound columns, then the literals), for ``n`` rows at once.

    Why many rows per statement: the SQLite store inserts a batch on its commit thread while the
    pipeline prepares the next one (store/sqlite.py ``_Committing``). SQLite runs a statement without
    the GIL, but binds its values with it: one statement per row would need the GIL back ~2,000 times
    per batch, and a thread that waits for it waits a switch interval (5 ms) each time the other is
    busy. One statement per batch binds with the GIL once and inserts every row without it.

    Its text depends on ``n`` and SQLite compiles it in ~20 µs per row, so ``n`` is a power of two
    (``rows_for``) and the statements stay in the connection's cache: a part of fewer rows is padded
    with rows whose first value is NULL (``padding``), which the ``WHERE`` drops (no real row has one:
    the first column of every shape is NOT NULL)."""

    def __init__(self, verb: str, table: str, bound: tuple[str, ...], literals: tuple[tuple[str, str], ...] = ()) -> None:
        names = (*bound, *(c for c, _ in literals))
        picked = (*(f"column{i}" for i in range(1, len(bound) + 1)), *(v for _, v in literals))
        self.width = len(bound)
        self.padding = (None,) + (0,) * (len(bound) - 1)  # zeros bind ~10x faster than NULLs
        self.blobs = tuple(i for i, c in enumerate(bound) if c in BLOB_COLUMNS)  # bound as bytearrays (``bindable``)
        self._head = f"{verb} INTO {table} ({', '.join(names)}) SELECT {', '.join(picked)} FROM (VALUES "
        self._row = f"({', '.join(('?',) * len(bound))})"
        self._text: dict[int, str] = {}

    def sql(self, n: int) -> str:
        text = self._text.get(n)
        if text is None:
            text = self._text[n] = f"{self._head}{', '.join([self._row] * n)}) WHERE column1 IS NOT NULL"
        return text


# The columns whose values are bytes (or a zstd frame's buffer): never NULL in a new row.
BLOB_COLUMNS = frozenset({"meta", "leaf_hash", "body", "body_sha256", "hash"})


_NOT_BLOBS = frozenset({int, bool, float, str})  # what ``bytearray`` would turn into other bytes, or refuse late


def bindable(statement: InsertStatement, values: list[Any]) -> None:
    """``values`` (rows of ``statement.width`` values, flattened) with their BLOB columns' values as
    bytearrays, in place. Why: sqlite3 binds an int, float, str or bytearray directly, and sends anything
    else (bytes, a zstd buffer) through its adapter protocol first (a tuple built, a dict looked up, a
    Python call); the statement binds while the commit thread holds the GIL, and the pipeline's thread
    waits meanwhile. Measured alone, a Python loop beside 2,048-row inserts lost 9.2 ms a batch with bytes
    and 5.5 with bytearrays; in the whole pipeline the gain was within the noise of the runs
    (bench/RESULTS.md "Eleventh session"). A copy costs ~50 ns, in C. Padding goes in after.

    ``bytearray(n)`` of an int is ``n`` zero bytes, of a str a TypeError only without an encoding: a
    value that is not bytes-like in a BLOB column would be stored as something else, silently, so the
    column's types are checked first (~45 µs a column per 2,000 rows, in C: < 0.1 µs a row) and such a value raises."""
    width = statement.width
    for k in statement.blobs:
        column = values[k::width]
        wrong = _NOT_BLOBS.intersection(map(type, column))
        if wrong:
            raise TypeError(f"a BLOB column ({k}) given {', '.join(sorted(t.__name__ for t in wrong))}: "
                            "only bytes-like values (or NULL) are stored there")
        try:
            values[k::width] = map(bytearray, column)
        except TypeError:  # a NULL among them (a v1 entry's row has no body hash): bound as it is
            values[k::width] = [v if v is None else bytearray(v) for v in column]


def rows_for(n: int, most: int) -> int:
    """The statement size for a part of ``n`` rows (1 <= n <= most, a power of two): the next power of two."""
    return min(most, 1 << (n - 1).bit_length())


def insert_sql(verb: str) -> dict[int, InsertStatement]:
    """``verb`` ("INSERT", "INSERT OR ROLLBACK") of a SQLite row (``head + (leaf_index, body)``) by its length."""
    audit = (*HEAD_COLUMNS, "leaf_index", "body")
    log = (*LOG_HEAD_COLUMNS, "leaf_index", "body")
    return {len(audit): InsertStatement(verb, "entries", audit, (*((c, "''") for c in LOG_COLUMNS), ("entry", "X''"))),
            len(log): InsertStatement(verb, "entries", log, (("entry", "X''"),))}


def log_meta(meta: bytes) -> tuple[LogMeta, list[Redaction]]:
    """``entries.meta`` of a log line as ``LogMeta``. Raises msgspec.DecodeError when damaged."""
    sm = _log_meta_decoder.decode(meta)
    return LogMeta(**{f: getattr(sm, f) for f in _LOG_FIELDS}), sm.redactions


def row_entry(row: Sequence[Any]) -> bytes:
    """The entry bytes of a row selected with ``ENTRY_SELECT``: stored (v1) or rebuilt (v2).

    Raises ValueError when a v2 row cannot be rebuilt (a column of the wrong type).
    """
    entry = bytes(row[1])
    if entry:
        return entry
    body_hash = row[4]
    if not isinstance(body_hash, bytes | memoryview) or len(body_hash) != 32:
        raise ValueError("body_sha256 is missing or not 32 bytes")
    for name, value in zip(ENTRY_COLUMNS, row[5:], strict=True):
        ok = (isinstance(value, int) and not isinstance(value, bool) if name in ("time", "seq")
              else value is None or isinstance(value, int) if name == "code"
              else isinstance(value, bytes | memoryview | str) if name == "meta"
              else isinstance(value, str))
        if not ok:
            raise ValueError(f"column {name} holds {describe(value)}")
    return encode_entry_v2(row[5:], bytes(body_hash))


_TIME_AT = 5 + ENTRY_COLUMNS.index("time")  # in a row selected with ENTRY_SELECT


def verify_row(row: Sequence[Any]) -> tuple[int, bytes | None, str, bytes, bytes | None, bytes | None, int | None]:
    """A row selected with ``ENTRY_SELECT`` as ``kubetrail.trail.verify.EntryRow``."""
    try:
        entry: bytes | None = row_entry(row)
        why = ""
    except ValueError as exc:
        entry, why = None, str(exc)
    body = row[3]
    if row[1]:  # v1: the stored header holds the body hash and the time
        return row[0], entry, why, bytes(row[2]), bytes(body) if body is not None else None, None, None
    t = row[_TIME_AT]
    return (row[0], entry, why, bytes(row[2]), bytes(body) if body is not None else None,
            bytes(row[4]) if row[4] is not None else None, t if isinstance(t, int) else -1)


_NAMES = tuple(c.strip() for c in COLUMNS.split(","))
_INTS = frozenset({"leaf_index", "time", "seq"})
_BLOBS = frozenset({"meta", "body"})


def describe(value: Any) -> str:
    """A stored value by its type, never its content: a damaged cell can hold anything, binary too."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | memoryview):
        return f"a BLOB of {len(value)} bytes"
    return {int: "an integer", float: "a real number", str: "text"}.get(type(value), type(value).__name__)


def _column_types(name: str) -> tuple[type, ...]:
    """What ``check_types`` accepts in column ``name`` (as ``isinstance``'s second argument)."""
    if name in _INTS:
        return (int,)
    if name == "code":
        return (int, type(None))
    if name in _BLOBS:
        return (bytes, memoryview, str, type(None)) if name == "body" else (bytes, memoryview, str)
    return (str,)


_TYPES = tuple(_column_types(n) for n in _NAMES)


def check_types(row: Sequence[Any]) -> None:
    """ValueError naming the first column (``COLUMNS`` order) whose stored type is not the record's:
    SQLite stores any type in any column, and a BLOB in ``time`` must be named, not printed.

    Every row read back is checked (the consumers read back the records their reorder buffers did not
    keep): all columns at once in C first (~0.4 µs a row against 2.5 column by column), and column by
    column only to name what is wrong."""
    if len(row) >= len(_TYPES) and all(map(isinstance, row, _TYPES)):
        return
    for name, value, types in zip(_NAMES, row[:len(_NAMES)], _TYPES, strict=True):
        if not isinstance(value, types):
            raise ValueError(f"column {name} holds {describe(value)}")


def decode_record(row: Sequence[Any], decompress: Callable[[bytes], bytes]) -> Record:
    """A row selected with ``COLUMNS`` as a Record. Raises ValueError/TypeError/DecodeError when damaged."""
    check_types(row)
    (idx, key, t, kind, source, seq, fmt, meta, body, audit_id, stage, level, verb, user, groups, imp,
     resource, subresource, api_group, namespace, name, code, source_ips, user_agent, request_uri, cred) = row[:26]
    if kind in LOG_KINDS:
        lm, redactions = log_meta(meta)
        return Record(kind=kind, key=key, time=t, source=SourceRef.parse(source), seq=seq, format=fmt, meta=lm,
                      redactions=redactions, body=decompress(body) if body is not None else b"", leaf_index=idx)
    sm = _meta_decoder.decode(meta)
    # Positional, in AuditMeta's field order, as ``extract_meta`` builds it (keywords cost ~1 µs a record;
    # tests/unit/store/test_decode_record.py compares with the fields by name).
    am = AuditMeta(audit_id, stage, level, verb, user, orjson.loads(groups), sm.uid, imp, sm.impersonated_groups,
                   resource, subresource, api_group, sm.api_version, namespace, name, code, orjson.loads(source_ips),
                   user_agent, request_uri, cred, sm.request_received, sm.stage_time, sm.lossy)
    ref = SourceRef.parse(source)
    return Record(kind=kind, key=key, time=t, source=ref, seq=seq, format=fmt, meta=am,
                  redactions=sm.redactions, body=decompress(body) if body is not None else b"",
                  leaf_index=idx)
