"""The store's public face: the ``Store`` and its typed repositories (DESIGN.md "Storage").

Every SQL statement and every transaction lives in ``kubetrail.store``; other packages get a store
from ``kubetrail.store.open_store`` and talk to these Protocols, never to a connection::

    from kubetrail.store import open_store
    with open_store(data_dir) as store:
        store.query(QueryFilters(user=["alice"]))          # events: reads need no transaction
        with store.transaction() as tx:                      # one atomic unit of writes
            tx.alerts.insert(row)
            tx.outbox.enqueue([...])

Reads on ``store.<repo>`` see committed data (autocommit); writes that must land together go
through one ``store.transaction()``, whose ``tx.<repo>`` are bound to that transaction (on SQLite
the same connection, on PostgreSQL one pooled connection). Transactions do not nest.

The trail's repository is typed by the Protocols the pure ``kubetrail.trail`` package declares
for what it needs (tree nodes, checkpoints, the rows ``verify`` reads); the store implements them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import msgspec

from kubetrail.record import Record
from kubetrail.store.queries import LogFilters, QueryFilters
from kubetrail.trail.protocols import CheckpointLog, Problem, VerifySource


class AppendResult(msgspec.Struct):
    stored: list[Record]
    duplicates: int

    @property
    def stored_count(self) -> int:
        return len(self.stored)


class PendingAppend(Protocol):
    """An append whose rows are in and whose commit may still be running (``Store.append_deferred``)."""

    def result(self) -> AppendResult:
        """Wait for the commit; the records are durable on return. Raises what the commit raised
        (the batch is then not stored: nothing of it is kept, as when ``append`` raises)."""
        ...


class Done:
    """A ``PendingAppend`` that was committed before it was returned (engines that do not defer)."""

    def __init__(self, result: AppendResult) -> None:
        self._result = result

    def result(self) -> AppendResult:
        return self._result


class AlertRow(msgspec.Struct, kw_only=True):
    """One ``alerts`` row; ``fields_json``/``tags_json`` are JSON text (the alerts package owns the model)."""

    rule: str
    priority: str
    level: int
    time: int
    subject: str
    output: str
    fields_json: str
    tags_json: str
    origin: str
    dedup_key: str
    suppressed: int = 0
    id: int | None = None
    last_seen: int = 0  # event time of the latest occurrence (0 on insert: the same as ``time``)
    count: int = 1  # occurrences (requests) folded into the alert
    occurrence: str = ""  # the occurrence the output describes (the earliest)


EvidenceRow = tuple[int, str, str, str, "int | None"]  # (alert_id, key, audit_id, stage, leaf_index)
# (alert_id, key, occurrence, time, audit_id, stage, leaf_index): one evidence record of one occurrence
EventRow = tuple[int, str, str, int, str, str, "int | None"]


class AuditIdRow(msgspec.Struct, frozen=True):
    """A stored record seen by its auditID (``KeysRepo.by_audit_id``): no body is read."""

    audit_id: str
    stage: str
    key: str
    time: int
    user: str
    leaf_index: int


class RetentionResult(msgspec.Struct):
    pruned: int = 0  # bodies set to NULL
    bytes_freed: int = 0  # their compressed size
    bodies_left: int = 0
    bytes_left: int = 0  # compressed bytes of the bodies kept
    db_bytes: int | None = None  # the store's real size afterwards (None on a dry run)


class TrailRepo(VerifySource, CheckpointLog, Protocol):
    """The Merkle tree beside the entries, the signed checkpoints and ``trail_state``."""

    def checkpoint_count(self) -> int: ...

    def latest_signed_ns(self) -> int | None:
        """When the most recent checkpoint was signed (ns), None before the first."""
        ...

    def lock(self) -> None:
        """Serialise trail writers (appends, signing) until the current transaction ends."""
        ...


class AlertsRepo(Protocol):
    def find_dedup(self, dedup_key: str) -> int | None: ...

    def window(self, rule: str, subject: str, after: int, upto: int) -> tuple[int, int | None]:
        """(how many alerts of rule+subject have lo < time <= hi, the newest id)."""
        ...

    def lock(self) -> None:
        """One alert writer at a time until the current transaction ends."""
        ...

    def insert(self, row: AlertRow, created_ns: int) -> int | None:
        """The new alert's id; None when its ``dedup_key`` is already stored."""
        ...

    def stateful_between(self, lo: int, hi: int) -> list[tuple[int, int, str]]:
        """(id, time, fields_json) of stateful-detector alerts with lo <= time <= hi."""
        ...

    def set_fields(self, rows: Sequence[tuple[str, int]]) -> None:
        """(fields_json, id) rows: an alert's fields with notes added after it was decided."""
        ...

    def add_suppressed(self, alert_id: int) -> None: ...

    def add_events(self, rows: Sequence[EventRow]) -> int: ...

    def has_occurrence(self, alert_id: int, occurrence: str) -> bool: ...

    def fold(self, alert_id: int, time: int, new_occurrence: bool, first: AlertRow | None) -> None: ...

    def events(self, alert_id: int, limit: int | None = None, offset: int = 0) -> list[EventRow]: ...

    def evidence_count(self, alert_id: int) -> int: ...

    def add_evidence(self, rows: Sequence[EvidenceRow]) -> None: ...

    def list(self, since: int | None = None, until: int | None = None, rule: str | None = None,
             max_level: int | None = None, limit: int | None = None) -> list[AlertRow]: ...

    def get(self, alert_id: int) -> AlertRow | None: ...

    def page(self, *, rule: str | None = None, max_level: int | None = None, subject: str | None = None,
             since: int | None = None, until: int | None = None, before: tuple[int, int] | None = None,
             limit: int = 50) -> list[AlertRow]:
        """Newest first (time, id); ``before`` = the (time, id) of the last row of the previous page."""
        ...

    def count_by_priority(self, since: int | None = None) -> dict[str, int]: ...

    def evidence(self, alert_ids: Sequence[int], first: int = 5) -> list[EvidenceRow]: ...

    def max_id(self) -> int: ...


class OutboxRepo(Protocol):
    def enqueue(self, rows: Sequence[tuple[int, str, int, int]]) -> None:
        """(alert_id, sink, next_attempt_ns, created_ns) rows; an existing (alert, sink) is kept."""
        ...

    def due(self, now: int, limit: int) -> list[tuple[int, int, str, int]]:
        """(row id, alert id, sink, attempts) of undelivered rows due at ``now``, oldest first."""
        ...

    def delivered(self, row_id: int, at: int) -> None: ...

    def failed(self, row_id: int, attempts: int, retry_at: int, error: str) -> None: ...

    def hold_sink(self, sink: str, until: int) -> None: ...

    def retry_now(self) -> int: ...

    def pending(self) -> int: ...

    def status(self) -> list[tuple[str, int, int, str]]: ...


class CredentialsRepo(Protocol):
    """The credential inventory's tables (migration 0004); documents are JSON text."""

    def lock(self) -> None:
        """One inventory writer at a time until the current transaction ends."""
        ...

    def doc(self, cred_id: str) -> str | None: ...

    def ids_where(self, column: str, value: str) -> list[str]:
        """Ids with ``column`` (credential_id, lookup or subject) equal to ``value``."""
        ...

    def ids_by_credential_id_ranked(self, credential_id: str) -> list[str]: ...

    def ids_subject_prefix(self, prefix: str) -> list[str]: ...

    def ids_issued_without_certificate(self, subject: str) -> list[str]: ...

    def subjects(self) -> set[str]: ...

    def delete(self, cred_id: str) -> None: ...

    def move_uses(self, src: str, into: str) -> None: ...

    def aggregate(self, cred_id: str) -> tuple[Any, ...] | None:
        """(uses, exact_uses, probable_uses, denied, first_used, last_used, stats JSON)."""
        ...

    def has_use(self, cred_id: str, received: int, request: str) -> bool:
        """Whether (credential, received, request) is stored: another stage of a request counted already."""
        ...

    def add_uses(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert uses known to be new (credential, received, request, time, leaf_index, code, link), at
        once; one already there is skipped."""
        ...

    def newest_use(self, cred_id: str) -> int | None:
        """The latest ``received`` among a credential's uses, None without any: no use received later can
        be stored already."""
        ...

    def set_use_code(self, cred_id: str, received: int, request: str, code: int) -> bool: ...

    def flags(self, cred_id: str) -> set[str]: ...

    def add_flag(self, row: Sequence[Any]) -> bool: ...

    def flag_rows(self, cred_id: str) -> list[tuple[Any, ...]]: ...

    def fact_flags(self, cred_id: str) -> set[str]: ...

    def promote_flag(self, cred_id: str, flag: str) -> bool: ...

    def flag_summary(self) -> list[tuple[str, str, int, int]]: ...

    def unalerted_flags(self) -> list[tuple[Any, ...]]: ...

    def mark_alerted(self, rows: Sequence[tuple[int | None, str, str]]) -> None: ...

    def set_binding(self, binding: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def bindings(self) -> list[tuple[Any, ...]]: ...

    def state(self, name: str) -> str | None: ...

    def set_state(self, name: str, value: str) -> None: ...

    def upsert(self, rows: Sequence[Sequence[Any]]) -> None: ...

    def upsert_aggregates(self, rows: Sequence[Sequence[Any]]) -> None: ...

    def clear(self) -> None: ...

    def count(self) -> int: ...

    def listing(self, kind: str | None, unaccounted: bool) -> list[tuple[Any, ...]]: ...

    def find(self, ident: str) -> list[str]: ...

    def uses(self, cred_id: str, limit: int, newest_first: bool = False) -> list[tuple[Any, ...]]: ...

    def use_histogram(self, cred_id: str, since: int, bucket_ns: int) -> list[tuple[int, int, int]]:
        """(bucket start ns, uses, denied uses) per ``bucket_ns`` from ``since``; empty buckets left out."""
        ...


class DetectorStateRepo(Protocol):
    def get(self, detector: str, key: str) -> str | None: ...

    def items(self, detector: str) -> list[tuple[str, str]]: ...

    def write(self, gone: Sequence[tuple[str, str]], rows: Sequence[tuple[str, str, str, int]]) -> None:
        """Delete ``gone`` (detector, key) pairs and upsert (detector, key, value, updated_ns) rows."""
        ...


class KeysRepo(Protocol):
    """Record keys across key versions (``key_aliases``, ``key_state``; ``kubetrail store rekey``)."""

    def state(self, name: str) -> int | None: ...

    def pending(self) -> tuple[int, int] | None:
        """``(from, to)``: the leaves still keyed with an older key version, or None."""
        ...

    def taken(self, keys: Sequence[str]) -> set[str]: ...

    def add_aliases(self, rows: Sequence[tuple[str, int]]) -> int: ...

    def progress(self, upto: int, stored_twice: int, without_body: int) -> None: ...

    def finish(self) -> None: ...

    def aliases(self) -> Iterator[tuple[str, int]]: ...

    def by_audit_id(self, audit_ids: Sequence[str]) -> list[AuditIdRow]:
        """The records of these auditIDs whose (auditID, stage) is stored more than once."""
        ...


class RetentionRepo(Protocol):
    def apply(self, before_ns: int | None, max_bytes: int | None, dry_run: bool = False) -> RetentionResult: ...


class Repos(Protocol):
    """What a transaction (and the store itself, for reads and one-statement writes) offers."""

    @property
    def trail(self) -> TrailRepo: ...

    @property
    def alerts(self) -> AlertsRepo: ...

    @property
    def outbox(self) -> OutboxRepo: ...

    @property
    def credentials(self) -> CredentialsRepo: ...

    @property
    def state(self) -> DetectorStateRepo: ...

    @property
    def retention(self) -> RetentionRepo: ...

    @property
    def keys(self) -> KeysRepo: ...


# Runs inside the append's transaction. The batch's rows may not be in ``entries`` yet (SQLite inserts them
# after the hooks, on its commit thread): a hook reads the batch from the records it is given (the tree its
# leaf hashes from ``TrailTables.staging``).
AppendHook = Callable[[Repos, list[Record]], None]


class Store(Repos, Protocol):
    """A store: events (append, search) plus the repositories; a context manager that closes it."""

    data_dir: str
    readonly: bool
    append_hooks: list[AppendHook]

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Repos]: ...

    def snapshot(self) -> AbstractContextManager[Repos]:
        """A read transaction: every read inside sees the same committed state (verify)."""
        ...

    def reopen(self) -> Store:
        """Another independent handle on the same store (a background thread's own connection)."""
        ...

    # -- events ---------------------------------------------------------------------------------
    def size(self) -> int: ...

    def append(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> AppendResult: ...

    def append_deferred(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> PendingAppend:
        """``append`` whose commit may finish in the background: the caller prepares the next batch
        meanwhile and calls ``result()`` before anything else uses the store (``Pipeline.ingest_items``)."""
        ...

    def prepare(self, records: Sequence[Record]) -> None:
        """Do now the part of a later ``append`` of these records that needs neither the store nor its
        transaction, leaving it on the records (the SQLite store: the row heads). The pipeline calls it
        while the previous batch still commits, so that work overlaps the commit instead of following
        it; it may be called from any thread that does not use the store meanwhile."""
        ...

    def count(self, name: str, n: int) -> None: ...

    def position(self, source: str) -> str | None: ...

    def counters(self) -> dict[str, int]: ...

    def query(self, filters: QueryFilters, limit: int | None = None, order: str = "ASC") -> Iterator[Record]: ...

    def count_matching(self, filters: QueryFilters) -> int: ...

    def logs(self, filters: LogFilters, limit: int | None = None, order: str = "ASC",
             by: str = "time") -> Iterator[Record]:
        """Log lines (kubetrail logs), re-checked against their leaf-covered metadata."""
        ...

    def count_logs(self, filters: LogFilters) -> int: ...

    def get(self, key: str) -> Record | None: ...

    def records_by_index(self, start: int, end: int) -> Iterator[Record]: ...

    def read_back(self, leaves: Iterable[int]) -> dict[int, Record]:
        """The stored records at these leaf indexes, read once for the consumers that release them."""
        ...

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes, bytes, bytes | None]]:
        ...

    def stats(self) -> dict[str, Any]: ...

    def histogram(self, since: int, bucket_ns: int) -> list[tuple[int, str, int]]:
        """(bucket start ns, kind, records) per ``bucket_ns`` of event time from ``since``; empty buckets left out."""
        ...

    def sources(self, since: int | None = None) -> list[tuple[str, str, int, int, int]]:
        """(source label, kind, records, first event time, last event time) per source and kind
        (only records with an event time from ``since``, when given)."""
        ...

    def decompress(self, body: bytes) -> bytes: ...

    def body_dictionary(self) -> tuple[int, bytes] | None:
        """(id, data) of the zstd dictionary new bodies are compressed with, or None (not trained
        yet, or plain frames): given to preparation workers, which compress bodies ahead (store/codec.py)."""
        ...

    def deep_check(self) -> list[Problem]:
        """Engine-level damage beyond what the leaves commit to (``kubetrail verify --deep``)."""
        ...
