"""The ONLY module that wires kubetrail's parts together (DESIGN.md "One picture").

Flow for every shape (``ingest``, ``run``, ``collector``)::

    source items ─► to_record (redact, extract, key) ─► batch ─► store.append (leaf indexes,
    positions, one transaction) ─► consumers (trail checkpoints, detection, credentials)

The agent with a ``sink`` (``run_agent``) stops at the node::

    sources ─► to_record ─► seal ─► WAL append (records + positions, fsync) ║ forwarder ─► broker ─► WAL ack

and the collector (``run_collector``) starts at the broker: fetch ─► store.append ─► broker ack ─►
consumers. Same components, different wiring (DESIGN.md "One picture").

Log sources (``cri_logs``, ``journald``, ``textfile``, ``k8s_events``) build their records
themselves (redacted by ``stages.redact_lines``, keyed by position and content) and hand them to
``Pipeline.commit_records``, which runs the record stages (``enrich``) before the same commit::

    log source ─► redact_lines, key ─► STAGES (enrich | mark_unenriched) ─► store.append ─► consumers

Consumers run after the commit, in the order of ``CONSUMERS``; each receives only the records that
were newly stored (duplicates never reach them twice).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec
import orjson

from kubetrail import ordering, telemetry
from kubetrail.alerts.config import DetectSettings
from kubetrail.buffer import BufferConfig
from kubetrail.config import LOG_SOURCES, Config
from kubetrail.consumer_process import ConsumerProcess
from kubetrail.credentials.consumer import credentials_consumer
from kubetrail.detect.consumer import DetectConsumer, detect_consumer
from kubetrail.errors import ConfigError, KubetrailError, Pushback, UnavailableError
from kubetrail.record import Decoded, Record, Rejected, SourceRef, printable
from kubetrail.runtime import batch_done, tune_gc
from kubetrail.sources.audit_file import AuditFileConfig, AuditFileSource
from kubetrail.sources.audit_webhook import AuditWebhookConfig, AuditWebhookSource
from kubetrail.sources.cri_logs import CriLogsConfig, CriLogsSource
from kubetrail.sources.files import Input
from kubetrail.sources.journald import JournaldConfig, JournaldSource
from kubetrail.sources.k8s_events import K8sEventsConfig, K8sEventsSource
from kubetrail.sources.textfile import TextfileConfig, TextfileSource
from kubetrail.stages.enrich import Enrich, mark_unenriched
from kubetrail.stages.extract import to_record
from kubetrail.stages.redact_lines import RedactLines
from kubetrail.stages.redaction_key import KEY_FILE, RedactionKey, load_or_create
from kubetrail.stages.seal import Seal
from kubetrail.store import Store, engine_fault, open_store
from kubetrail.store.api import PendingAppend
from kubetrail.store.sqlite_schema import set_cache_kib
from kubetrail.trail.checkpointer import make_checkpointer
from kubetrail.workers import Ready, WorkerPool, cpus, default_live_workers

if TYPE_CHECKING:
    # The agent's WAL and forwarder and the collector's broker loop (asyncio) are imported where those
    # commands start them: ``ingest``, ``run`` and the query commands never need them (~40 ms of start-up).
    from kubetrail.buffer import Wal

REJECTS_FILE = "rejects.jsonl"
DEFAULT_BATCH = 2000
# A writer that hosts detection and credentials beside preparation workers (2 CPUs) keeps to the memory
# aim of issue 18 (< 300 MB per process on a 5 GB file): its reorder buffers hold 24 MiB of bodies of
# which 4 MiB parsed (defaults 48/16; a record over the cap is read back from the store when released)
# and its SQLite page cache is 16 MiB (default 64). Measured on 150k events of the dense 1 GiB file:
# 354 -> 240 MiB peak, +6 % CPU in the writer (bench/RESULTS.md "Fourth session").
LEAN_BUFFERS = (24 << 20, 4 << 20)
LEAN_CACHE_KIB = 16 * 1024


class Consumer(Protocol):
    """Runs after each commit. May also define ``tick(store)`` for timer work (``run`` calls it
    every ``checkpoint_interval_secs``)."""

    def consume(self, records: list[Record], store: Store) -> None: ...

    def close(self) -> None: ...


class Options(msgspec.Struct, kw_only=True):
    """What consumers may need to know about the run; the config file fills it for `run`."""

    data_dir: str
    store: str | None = None  # a store URL (kubetrail.store.open_store); None: the data directory's SQLite file
    cluster: str = ""
    detect: bool = True
    witness_dir: str | None = None
    live: bool = False  # a long-running process (run, webhook serve): detection keeps time with the wall clock
    redaction_key_file: str | None = None  # default DATA/redaction.key (stages/redaction_key.py)
    workers: int = 0  # preparation processes (kubetrail.workers), and then detection and credentials in a
    # process of their own (kubetrail.consumer_process) when ``apart``; 0 = everything in this process
    apart: bool | None = None  # with workers: detection and credentials in their own process (None: with
    # 3 CPUs or more, or live; see open_pipeline)
    detect_settings: DetectSettings | None = None  # the config file's detect: section; None: DATA/detect.yaml


ConsumerFactory = Callable[[Store, Options], "Consumer | None"]

# The consumer table, in order. Each factory may return None when its part is not configured.
CONSUMERS: list[ConsumerFactory] = [make_checkpointer, detect_consumer, credentials_consumer]
# Those that keep their own position in the store (``next_leaf``, catch_up.py) and so can run in a
# process of their own on the committed leaves (``kubetrail.consumer_process``, with ``workers``).
OWN_PROCESS: list[ConsumerFactory] = [detect_consumer, credentials_consumer]


def build_consumers(store: Store, options: Options, factories: Sequence[ConsumerFactory] | None = None) -> list[Consumer]:
    out: list[Consumer] = []
    for factory in CONSUMERS if factories is None else factories:
        consumer = factory(store, options)
        if consumer is not None:
            out.append(consumer)
    return out


class Summary(msgspec.Struct, kw_only=True):
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        return (f"read {self.read}, stored {self.stored}, duplicates {self.duplicates}, "
                f"rejected {self.rejected} ({self.seconds:.2f}s, {rate:,.0f} events/s)")


class RejectsFile:
    """Append-only JSON lines: position and reason, never the input itself (see record.Rejected)."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, REJECTS_FILE)

    def write(self, items: Sequence[Rejected]) -> None:
        if not items:
            return
        with open(self.path, "ab") as fh:
            now = time.time_ns()
            for r in items:
                fh.write(orjson.dumps({"time_ns": now, "position": printable(r.position),
                                   "reason": printable(r.reason)}) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())


RecordStage = Callable[[list[Record]], list[Record]]


class Pipeline:
    """Batches records into the store and hands what was stored to the consumers."""

    def __init__(self, store: Store, consumers: list[Consumer], rejects: RejectsFile,
                 batch_size: int = DEFAULT_BATCH, redaction_key: RedactionKey | None = None,
                 stages: Sequence[RecordStage] = ()) -> None:
        self.store = store
        self.redaction_key = redaction_key or load_or_create(os.path.join(store.data_dir, KEY_FILE))
        self.consumers = consumers
        self.rejects = rejects
        self.batch_size = batch_size
        self.stages = list(stages)
        self.summary = Summary()
        self._lock = threading.Lock()  # one writer: live sources commit from their own threads
        self.workers: WorkerPool | None = None  # set by open_pipeline when Options.workers > 0
        self.apart: ConsumerProcess | None = None  # the consumers' own process (one of ``consumers``), ditto
        self.on_close: Callable[[], None] | None = None  # open_pipeline's memory caps, restored at close

    def commit(self, records: list[Record], rejected: Sequence[Rejected] = (),
               positions: dict[str, str] | None = None, where: Sequence[str] = (),
               source: SourceRef | None = None) -> list[Record]:
        """Durably store one batch (and the positions that produced it); returns the new records.

        ``where`` names each record's input position (parallel to ``records``) for the reject a
        record becomes when the store cannot take it (see ``_append_isolating``); ``source`` labels
        the telemetry of rejects in a batch without records."""
        stored = self.store_batch(records, rejected, positions, where, source)
        self.notify(stored)
        return stored

    def store_batch(self, records: list[Record], rejected: Sequence[Rejected] = (),
                    positions: dict[str, str] | None = None, where: Sequence[str] = (),
                    source: SourceRef | None = None) -> list[Record]:
        """The commit alone (``commit`` without the consumers): the collector acknowledges the
        broker between the two."""
        return self._store_begin(records, rejected, positions, where, source, defer=False)()

    def _store_begin(self, records: list[Record], rejected: Sequence[Rejected], positions: dict[str, str] | None,
                     where: Sequence[str], source: SourceRef | None, defer: bool) -> Callable[[], list[Record]]:
        """``store_batch`` in two steps: the rows go in now; the returned call waits for the commit
        (with ``defer``, it may still be running on the store's commit thread: ``ingest_items``
        prepares the next batch meanwhile) and returns the new records. Nothing may use the store
        between the two."""
        self.rejects.write(rejected)  # first: a crash after the commit must not lose them
        if self.apart is not None:
            self.apart.wait_ready()  # its consumers must have read their position before this commit
        started = time.perf_counter()
        pending: PendingAppend | None = None
        if defer:
            try:
                pending = self.store.append_deferred(records, positions)
            except Exception as exc:
                if _environmental(exc):
                    raise
                # a record's own failure (nothing of the batch is kept): isolated below, synchronously
        outcome = None if pending is not None else self._append_isolating(records, positions, where)

        def finish() -> list[Record]:
            if pending is None:
                assert outcome is not None
                stored, duplicates, refused = outcome
            else:
                try:
                    result = pending.result()
                except Exception as exc:
                    if _environmental(exc):
                        raise
                    # nothing of the batch is kept: isolated as a synchronous append would have been
                    stored, duplicates, refused = self._append_isolating(records, positions, where)
                else:
                    stored, duplicates, refused = result.stored, result.duplicates, []
            return self._stored(records, rejected, stored, duplicates, refused, started, source)

        return finish

    def _stored(self, records: list[Record], rejected: Sequence[Rejected], stored: list[Record], duplicates: int,
                refused: list[Rejected], started: float, source: SourceRef | None) -> list[Record]:
        """After a batch's commit: telemetry, rejects, the summary, and what duplicates tell the consumers."""
        telemetry.emit_commit(records, stored, duplicates, len(rejected) + len(refused),
                              time.perf_counter() - started, self.store.size(), source.label() if source else "")
        self.rejects.write(refused)
        rejected = [*rejected, *refused]
        if rejected:
            self.store.count("rejected", len(rejected))
        self.summary.read += len(records) + len(rejected) - len(refused)
        self.summary.stored += len(stored)
        self.summary.duplicates += duplicates
        self.summary.rejected += len(rejected)
        if duplicates:  # a path that delivers only what another path stored first is not silent
            labels = {r.source.label() for r in records}
            _each([c for c in self.consumers if getattr(c, "delivered", None) is not None],
                  lambda c: c.delivered(labels))  # type: ignore[attr-defined]
            # Sealed records the trail already held still arrived: their seqs are no gap (the
            # apiserver resent a batch, a second path delivered the same event). Told before the
            # caller acknowledges the broker, so a crash re-delivers rather than forgets them.
            kept = {id(r) for r in stored}
            gone = {r.position for r in refused}
            dups = [r for r in records if r.seq and id(r) not in kept and r.key not in gone]
            if dups:
                _each([c for c in self.consumers if getattr(c, "arrived", None) is not None],
                      lambda c: c.arrived(dups))  # type: ignore[attr-defined]
        return stored

    def notify(self, stored: list[Record]) -> None:
        """Hand newly stored records to the consumers (trail checkpoints, detection, credentials)."""
        try:
            if stored:
                _each(self.consumers, lambda c: c.consume(stored, self.store))
        finally:
            batch_done()  # what the batch left alive is frozen out of later collections (runtime.py)

    def _append_isolating(self, records: list[Record], positions: dict[str, str] | None,
                          where: Sequence[str]) -> tuple[list[Record], int, list[Rejected]]:
        """``store.append``; when it fails for a reason that is the records' own (a value a column
        cannot hold, a row that cannot be built), the batch is split until the failing records are
        alone, those become rejects and every other record is stored, in order, with the positions
        committed by the last part. Failures of the store itself (disk full, locked, I/O) are
        raised: the batch is retried whole, nothing is rejected for them."""
        try:
            result = self.store.append(records, positions)
            return result.stored, result.duplicates, []
        except Exception as exc:
            if _environmental(exc):
                raise
            if len(records) <= 1:
                position = where[0] if where else (records[0].key if records else "?")
                refused = [Rejected(position, f"cannot be stored ({type(exc).__name__})")] if records else []
                if positions:
                    self.store.append([], positions)
                return [], 0, refused
        half = len(records) // 2
        parts = [(records[:half], where[:half], None), (records[half:], where[half:], positions)]
        stored: list[Record] = []
        duplicates = 0
        refused = []
        for part, part_where, part_positions in parts:
            s, d, r = self._append_isolating(part, part_positions, part_where)
            stored += s
            duplicates += d
            refused += r
        return stored, duplicates, refused

    def commit_decoded(self, decoded: Sequence[Decoded], rejected: Sequence[Rejected], source: SourceRef,
                       positions: dict[str, str] | None = None) -> list[Record]:
        """The live sources' entry point: redact and key, then ``commit`` under the writer lock."""
        records: list[Record] = []
        where: list[str] = []
        rejected = list(rejected)
        for d in decoded:
            item = _record_or_reject(d, source, self.redaction_key)
            if isinstance(item, Record):
                records.append(item)
                where.append(d.position)
            else:
                rejected.append(item)
        with self._lock:
            return self.commit(records, rejected, positions, where, source)

    def commit_records(self, records: list[Record], positions: dict[str, str] | None = None) -> list[Record]:
        """The log sources' entry point: records already redacted and keyed; the stages (enrich) run
        here, outside the writer lock, then ``commit`` stores them with their positions."""
        for stage in self.stages:
            records = stage(records)
        redacted: dict[str, int] = {}
        for r in records:
            for x in r.redactions:
                redacted[x.what] = redacted.get(x.what, 0) + 1
        with self._lock:
            stored = self.commit(records, (), positions)
            for what, n in sorted(redacted.items()):
                self.store.count(f"redacted_{what}", n)
            return stored

    def ingest_items(self, items: Iterable[Decoded | Rejected | Ready], source: SourceRef,
                     progress: Callable[[int], None] | None = None) -> Summary:
        started = time.perf_counter()
        batch: list[Record] = []
        where: list[str] = []
        rejected: list[Rejected] = []
        # The batch before this one: committing on the store's thread while this one is prepared
        # (``_store_begin``); its consumers run once it is durable, before this batch goes in.
        committing: tuple[Callable[[], list[Record]], int] | None = None
        for item in items:
            if isinstance(item, Ready):  # prepared by a worker process (kubetrail.workers)
                where.append(item.position)
                item = item.record
            elif isinstance(item, Decoded):
                position = item.position
                item = _record_or_reject(item, source, self.redaction_key)
                if isinstance(item, Record):
                    where.append(position)
            (batch if isinstance(item, Record) else rejected).append(item)
            if len(batch) + len(rejected) >= self.batch_size:
                self.store.prepare(batch)  # while the previous batch still commits (``Store.prepare``)
                self._settle(committing, progress)
                committing = (self._store_begin(batch, rejected, None, where, source, defer=True),
                              len(batch) + len(rejected))
                batch, rejected, where = [], [], []
        self._settle(committing, progress)
        if batch or rejected:
            self.commit(batch, rejected, where=where, source=source)
            if progress:
                progress(len(batch) + len(rejected))
        self.summary.seconds += time.perf_counter() - started
        return self.summary

    def _settle(self, committing: tuple[Callable[[], list[Record]], int] | None,
                progress: Callable[[int], None] | None) -> None:
        """Wait for a batch's commit, then hand its new records to the consumers."""
        if committing is not None:
            finish, size = committing
            self.notify(finish())
            if progress:
                progress(size)

    def ingest_input(self, inp: Input, source: SourceRef, progress: Callable[[int], None] | None = None) -> Summary:
        """One opened input (file, .gz, stdin): prepared by the worker processes when there are some,
        else decoded here; the same records, positions and rejects either way."""
        items = self.workers.input_items(inp, source) if self.workers is not None else inp.items()
        return self.ingest_items(items, source, progress)

    def tick(self) -> None:
        """Timer work of consumers that have some (signed checkpoints when idle, audit silence)."""
        with self._lock:
            _each([c for c in self.consumers if getattr(c, "tick", None) is not None],
                  lambda c: c.tick(self.store))

    def close(self) -> None:
        try:
            if self.workers is not None:
                self.workers.close()
                self.workers = None
            ordering.drain_together(self.consumers)  # what the consumers' close would drain, slice by slice
            for consumer in self.consumers:
                consumer.close()
        finally:
            if self.on_close is not None:
                self.on_close()
                self.on_close = None


def _each(consumers: Sequence[Consumer], call: Callable[[Consumer], None]) -> None:
    """Run ``call`` on every consumer even when one fails (a checkpointer refusing to sign a
    tampered tree must not stop detection or the credential inventory), then raise the first
    failure: the records are stored either way, and the caller decides how loud to be."""
    first: BaseException | None = None
    for consumer in consumers:
        try:
            call(consumer)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others ran
            first = first or exc
    if first is not None:
        raise first


def _environmental(exc: BaseException) -> bool:
    """A failure of the store or the machine, not of the records being written: never a reason to
    reject an event (it is retried instead)."""
    return isinstance(exc, OSError | MemoryError | KubetrailError) or engine_fault(exc)


def _record_or_reject(decoded: Decoded, source: SourceRef, key: RedactionKey) -> Record | Rejected:
    """One bad event becomes a reject; it never fails its batch, blocks a live source or is retried
    forever. (The reason names the error type only: its message could quote the event.)"""
    try:
        return to_record(decoded, source, key)
    except Exception as exc:  # noqa: BLE001 - whatever an event does, the rest of the input goes on
        return Rejected(decoded.position, f"cannot be stored ({type(exc).__name__})")


def open_pipeline(options: Options, batch_size: int = DEFAULT_BATCH) -> Pipeline:
    """The store, the consumers and, with ``workers``, the preparation processes.

    Where detection and credentials run with workers (``Options.apart``, default by the CPU count):
    in a process of their own beside the writer with 3 CPUs or more (and always for the live sources
    of ``run``, which the preparation workers do not serve); in the writer on 2 CPUs, where a third
    busy process would only take turns with the others, and the workers then also run the rules on
    each event while they have it parsed (``WorkerPool(rules=)``)."""
    apart = options.workers > 0 and (options.apart if options.apart is not None else options.live or cpus() > 2)
    lean = options.workers > 0 and not apart  # the writer hosts the consumers: it must stay small too
    restore: Callable[[], None] | None = None
    if lean:
        budget = ordering.set_budget(*LEAN_BUFFERS)
        cache = set_cache_kib(LEAN_CACHE_KIB)

        def restore() -> None:  # buffers and connections made later in this process get the defaults
            ordering.set_budget(*budget)
            set_cache_kib(cache)
    try:
        store = open_store(options.store or options.data_dir, data_dir=options.data_dir)
        key = load_or_create(options.redaction_key_file or os.path.join(options.data_dir, KEY_FILE))
        here = [f for f in CONSUMERS if f not in OWN_PROCESS] if apart else CONSUMERS
        pipe = Pipeline(store, build_consumers(store, options, here), RejectsFile(options.data_dir), batch_size, key)
    except BaseException:
        if restore is not None:
            restore()
        raise
    pipe.on_close = restore
    tune_gc()  # after the consumers loaded their rules: those are frozen with the rest of start-up
    if options.workers > 0:
        # After the consumers: forked workers (``workers._may_fork``) take the writer's compiled rules
        # and its frozen start-up as they are, and start in milliseconds.
        detect = next((c for c in pipe.consumers if isinstance(c, DetectConsumer)), None)
        pipe.workers = WorkerPool(options.workers, key, rules=detect.settings if detect is not None else None,
                                  ruleset=detect.ruleset if detect is not None else None,
                                  dictionary=store.body_dictionary).start()
    if apart:
        pipe.apart = ConsumerProcess(options, OWN_PROCESS)
        pipe.consumers.append(pipe.apart)
    return pipe


class LiveSource(Protocol):
    def run(self, commit: Callable[..., object], load_position: Callable[[str], str | None],
            stop: threading.Event) -> None: ...


def build_sources(config: Config, redaction_key: RedactionKey | None = None) -> list[LiveSource]:
    """One live source per ``sources[]`` entry; the config's ``type`` picks the class. Log sources
    redact with the pipeline's redaction key (keyed digests, as audit events)."""
    out: list[LiveSource] = []
    redact = RedactLines(config.redact, redaction_key)
    for src in config.sources:
        if isinstance(src, AuditFileConfig):
            out.append(AuditFileSource(src, cluster=config.cluster))
        elif isinstance(src, AuditWebhookConfig):
            out.append(AuditWebhookSource(src, cluster=config.cluster))
        elif isinstance(src, CriLogsConfig):
            out.append(CriLogsSource(src, cluster=config.cluster, redact=redact))
        elif isinstance(src, JournaldConfig):
            out.append(JournaldSource(src, cluster=config.cluster, redact=redact))
        elif isinstance(src, TextfileConfig):
            out.append(TextfileSource(src, cluster=config.cluster, redact=redact))
        elif isinstance(src, K8sEventsConfig):
            if not (src.kubeconfig or src.in_cluster) and config.enrich is not None:
                e = config.enrich  # one connection setting for the node: the enrich section's
                src = msgspec.structs.replace(src, kubeconfig=e.kubeconfig, in_cluster=e.in_cluster,
                                              service_account_dir=e.service_account_dir, context=e.context)
            out.append(K8sEventsSource(src, cluster=config.cluster, redact=redact))
    return out


def _is_log_source(source: LiveSource) -> bool:
    """Log sources hand over finished records (``commit_records``), audit sources decoded events."""
    return isinstance(getattr(source, "config", None), LOG_SOURCES)


def build_stages(config: Config) -> tuple[list[RecordStage], Enrich | None]:
    """The record stages of log lines: ``enrich`` when the config has an API server, else a mark
    saying the lines carry only what their path says. The Enrich is returned to be started/closed."""
    if not any(isinstance(s, LOG_SOURCES) for s in config.sources):
        return [], None
    if config.enrich is None:
        return [mark_unenriched], None
    enrich = Enrich(config.enrich)
    return [enrich], enrich


def run_live(config: Config, stop: threading.Event, log: Callable[[str], None] = print) -> Summary:
    """Run every configured source until ``stop`` is set; then flush and close cleanly.

    A source that fails is logged and restarted with backoff (its position is in the store, so a
    restart re-reads at most one uncommitted chunk, which the store de-duplicates). A source that
    cannot start at all on its first attempt (``UnavailableError``: a port in use, a TLS key that
    does not match its certificate) stops the run at once and is raised: no retry can fix it.
    """
    workers = default_live_workers() if config.workers is None else config.workers
    options = Options(data_dir=config.data_dir, store=config.store, cluster=config.cluster, detect=config.detect.enabled,
                      witness_dir=config.witness_dir, live=True, redaction_key_file=config.redaction_key_file,
                      detect_settings=config.detect.settings(), workers=workers)
    stages, enrich = build_stages(config)
    pipe = open_pipeline(options)
    if pipe.apart is not None:
        # A live source may commit nothing for a long time; a consumer that cannot start (a bad
        # detect: setting) must stop the run now, as it does in one process, not at the first commit.
        try:
            pipe.apart.wait_ready()
        except BaseException:
            pipe.close()
            raise
        log("detection and credentials run in a process of their own (workers: "
            f"{workers}{', by the CPU count' if config.workers is None else ''})")
    pipe.stages = stages
    if enrich is not None:
        enrich.start()
    threads = []

    fatal: list[UnavailableError] = []
    for source in build_sources(config, pipe.redaction_key):
        commit = pipe.commit_records if _is_log_source(source) else pipe.commit_decoded
        t = threading.Thread(target=_supervise, args=(source, commit, pipe.store.position, stop, log,
                                                      fatal), name=type(source).__name__, daemon=True)
        t.start()
        threads.append(t)
    def tick() -> None:
        try:
            pipe.tick()
        except Exception as exc:  # noqa: BLE001 - e.g. a refusal to sign: say it every tick, keep storing
            log(f"timer work failed: {exc}")

    try:
        while not stop.wait(config.checkpoint_interval_secs):
            tick()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        tick()
        pipe.close()
        pipe.store.close()
        if enrich is not None:
            enrich.close()
    if fatal:
        raise fatal[0]
    return pipe.summary


# -- the distributed shapes: agent (sources -> seal -> WAL -> broker) and collector (broker -> store) --

AGENT_FRAME_RECORDS = 2000  # records per WAL frame (and so at most per broker message before splitting)


class AgentSummary(msgspec.Struct, kw_only=True):
    read: int = 0
    buffered: int = 0
    rejected: int = 0
    shipped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"read {self.read}, buffered {self.buffered}, rejected {self.rejected}, shipped {self.shipped} "
                f"({self.seconds:.2f}s)")


class AgentWriter:
    """The agent's commit: redact and key (``to_record``), seal, and append to the WAL in one step
    under one lock, so each source's seqs are in WAL order and a failed append re-seals the same."""

    def __init__(self, wal: Wal, rejects: RejectsFile, stop: threading.Event, redaction_key: RedactionKey) -> None:
        self.wal = wal
        self.rejects = rejects
        self.stop = stop
        self.redaction_key = redaction_key
        self.seal = Seal(wal.seal_state())
        self.stages: list[RecordStage] = []
        self.summary = AgentSummary()
        self._lock = threading.Lock()

    def commit(self, decoded: Sequence[Decoded], rejected: Sequence[Rejected], source: SourceRef,
               positions: dict[str, str] | None = None, timeout: float | None = None) -> None:
        """Durable in the WAL on return (records and ``positions`` together). ``timeout`` None waits
        for room until the agent stops (file sources stop reading); else ``Pushback`` after it."""
        records: list[Record] = []
        rejected = list(rejected)
        for d in decoded:
            item = _record_or_reject(d, source, self.redaction_key)
            (records if isinstance(item, Record) else rejected).append(item)
        self.rejects.write(rejected)
        label = source.label()
        chunks = [records[i:i + AGENT_FRAME_RECORDS] for i in range(0, len(records), AGENT_FRAME_RECORDS)] or [[]]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self._append(label, chunk, dict(positions or {}) if last else {}, timeout)
        self.summary.read += len(records) + len(rejected)
        self.summary.buffered += len(records)
        self.summary.rejected += len(rejected)

    def commit_records(self, records: list[Record], positions: dict[str, str] | None = None) -> None:
        """The log sources' commit: records already redacted and keyed; the record stages (enrich)
        run here, then seal and WAL append as for audit events (one source label per batch)."""
        for stage in self.stages:
            records = stage(records)
        by_label: dict[str, list[Record]] = {}
        for r in records:
            by_label.setdefault(r.source.label(), []).append(r)
        labels = list(by_label) or [""]
        for i, label in enumerate(labels):
            last = i == len(labels) - 1
            chunk = by_label.get(label, [])
            for j in range(0, max(len(chunk), 1), AGENT_FRAME_RECORDS):
                end = j + AGENT_FRAME_RECORDS >= len(chunk)
                self._append(label, chunk[j:j + AGENT_FRAME_RECORDS], dict(positions or {}) if last and end else {},
                             None)
        self.summary.read += len(records)
        self.summary.buffered += len(records)

    def _append(self, label: str, records: list[Record], positions: dict[str, str], timeout: float | None) -> None:
        while True:
            with self._lock:
                point = self.seal.seal(label, records)
                try:
                    self.wal.append(label, records, positions, timeout=1.0 if timeout is None else timeout)
                except Pushback:
                    if timeout is not None or self.stop.is_set():
                        raise
                    continue
                self.seal.commit(label, point)
                return


def run_agent(config: Config, stop: threading.Event, log: Callable[[str], None] = print) -> AgentSummary | Summary:
    """``kubetrail agent``: with ``sink:`` the sources feed the node's WAL and a forwarder ships it
    to the broker; without, the agent stores locally like ``run`` (the embedded shape)."""
    if config.sink is None:
        return run_live(config, stop, log)
    started = time.perf_counter()
    os.makedirs(config.data_dir, exist_ok=True)
    buffer = config.buffer or BufferConfig()
    wal = buffer.open(os.path.join(config.data_dir, "buffer"))
    key = load_or_create(config.redaction_key_file or os.path.join(config.data_dir, KEY_FILE))
    writer = AgentWriter(wal, RejectsFile(config.data_dir), stop, key)
    writer.stages, enrich = build_stages(config)
    if enrich is not None:
        enrich.start()
    from kubetrail.sinks.forward import Forwarder

    forwarder = Forwarder(wal, config.sink.build(), stop, log)
    shipper = threading.Thread(target=forwarder.run, name="forwarder", daemon=True)
    shipper.start()
    threads = []
    fatal: list[UnavailableError] = []
    for source in build_sources(config, key):
        timeout = buffer.block_timeout_secs if isinstance(source, AuditWebhookSource) else None

        def commit(decoded: Sequence[Decoded], rejected: Sequence[Rejected], ref: SourceRef,
                   positions: dict[str, str] | None = None, _timeout: float | None = timeout) -> None:
            writer.commit(decoded, rejected, ref, positions, _timeout)

        chosen = writer.commit_records if _is_log_source(source) else commit
        t = threading.Thread(target=_supervise, args=(source, chosen, wal.position, stop, log, fatal),
                             name=type(source).__name__, daemon=True)
        t.start()
        threads.append(t)
    try:
        stop.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        shipper.join(timeout=60)
        wal.close()
        if enrich is not None:
            enrich.close()
    if fatal:
        raise fatal[0]
    writer.summary.shipped = forwarder.sent_records
    writer.summary.seconds = time.perf_counter() - started
    return writer.summary


def _supervise(source: LiveSource, commit: Callable[..., object], load_position: Callable[[str], str | None],
               stop: threading.Event, log: Callable[[str], None], fatal: list[UnavailableError] | None = None) -> None:
    """Run a live source until ``stop``; a failure is logged and the source restarted with backoff
    (its position is durable with its records, so a restart re-reads at most what was not). A
    source that cannot start at all (``UnavailableError`` on the first try: a port in use) stops
    the process instead: it goes into ``fatal`` and ``stop`` is set."""
    delay = 0.5
    first = True
    while not stop.is_set():
        try:
            source.run(commit, load_position, stop)
            return
        except UnavailableError as exc:
            if first and fatal is not None:
                fatal.append(exc)
                stop.set()
                return
            log(f"source {type(source).__name__} failed: {exc}; restarting in {delay:.1f}s")
        except Exception as exc:  # noqa: BLE001 - a source must never take the process down
            log(f"source {type(source).__name__} failed: {exc}; restarting in {delay:.1f}s")
        first = False
        stop.wait(delay)
        delay = min(delay * 2, 30.0)


def run_collector(config: Config, stop: threading.Event, log: Callable[[str], None] = print) -> Summary:
    """``kubetrail collector``: the broker's records into the store, the trail and the consumers."""
    if config.source is None:
        raise ConfigError("source", "the collector needs a `source:` (type: nats or kafka) to read from")
    options = Options(data_dir=config.data_dir, store=config.store, cluster=config.cluster, detect=config.detect.enabled,
                      witness_dir=config.witness_dir, live=True, redaction_key_file=config.redaction_key_file,
                      detect_settings=config.detect.settings())
    import asyncio

    from kubetrail.sources.broker import consume

    pipe = open_pipeline(options)
    started = time.perf_counter()
    try:
        asyncio.run(consume(config.source.build(), pipe.store_batch, pipe.notify, stop, log, tick=pipe.tick,
                            tick_secs=config.checkpoint_interval_secs))
    finally:
        try:
            pipe.tick()
        except Exception as exc:  # noqa: BLE001 - e.g. a refusal to sign: said, then closed cleanly
            log(f"timer work failed: {exc}")
        pipe.close()
        pipe.store.close()
    pipe.summary.seconds = time.perf_counter() - started
    return pipe.summary
