"""Detection and the credential inventory in their own process, on committed rows (issue 18).

With preparation workers (``ingest --workers N``) the writer is the bottleneck: it stores every
record, and the consumers after it parse every body again (parsed events do not cross a process
boundary cheaply) and cost as much as the store. So the consumers that keep their own position in
the store (``next_leaf``: detection, credentials) run in one more process, sent each batch of newly
stored records (with their leaf indexes) once it is committed::

    writer: store.append ─► checkpointer ─► MessagePack of the new records ══ pipe ══►
    consumer process: detection, credentials (their own transactions on the same store)

MessagePack (``record.encode_records``, ~1 µs a record each way) is cheaper than reading the rows
back (SQL, zstd, decoding the columns). The pipe holds about one batch: while the consumers work
on one, the writer stores the next, and waits when it is a batch ahead (memory stays bounded).

They receive the same records in the same batches as in the writer (one message per commit, in
commit order, and the process is ready before the first commit), so they decide the same alerts
and inventory (tests/unit/speed/test_workers_same_results.py). A failure in the consumer process is
raised in the writer at its next batch, as a consumer's failure is in one process; the records are
stored either way and the consumers resume from their ``next_leaf`` on the next start (catch_up.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kubetrail import ordering, telemetry
from kubetrail.errors import ConfigError, KubetrailError
from kubetrail.record import Record, decode_records, encode_records
from kubetrail.runtime import batch_done, tune_gc

READY_TIMEOUT_SECS = 120.0  # start-up of the process (imports, compiling the rules)
# Memory of the consumers' process (issue 18: < 300 MB beside the writer). Its two reorder buffers hold
# the same records; these caps (one process: 48 / 16 MiB, ordering.py) keep ~4,000 RequestResponse
# records in memory, none of them parsed (a held record's event is parsed again when released), the
# rest read back from the store. With 4 MiB of parsed events the 5 GB run peaked at 296 MiB (310 MB),
# with none at 282 MiB (bench/RESULTS.md "Workers, run and memory"). Its SQLite page cache serves only
# those reads and the consumers' own tables (the writer's: 64 MiB).
MEMORY_BYTES = 16 << 20
PARSED_BYTES = 0
CACHE_KIB = 8 * 1024


class ConsumerProcessError(KubetrailError):
    """The detection/credentials process failed (its message says how); the records are stored."""


Factory = Callable[[Any, Any], Any]


class ConsumerProcess:
    """The writer's side: a consumer (``consume``, ``close``, ``delivered``, ``arrived``, ``tick``)
    whose work happens in the child process. A thread here reads what the child says: its telemetry
    events are emitted here (``/metrics`` of ``run`` is this process's registry: an alert raised
    there moves ``kubetrail_detect_alerts_total`` here), anything else is a reply for ``_expect``."""

    def __init__(self, options: Any, factories: Sequence[Factory]) -> None:
        ctx = multiprocessing.get_context("forkserver")
        self._conn, child = ctx.Pipe()
        quiet = sys.stdout is not sys.__stdout__  # e.g. ingest --json: alert sinks keep off stdout here too
        self._proc = ctx.Process(target=_main, args=(options, list(factories), child, quiet),
                                 name="kubetrail-consumers", daemon=True)
        self._proc.start()
        child.close()
        self._ready = False
        self._failed: str | None = None
        self._replies: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="kubetrail-consumers-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except BaseException:  # noqa: BLE001 - EOF, a reset pipe (killed with our message unread), a torn message
                self._replies.put(("gone",))
                return
            if msg[0] == "events":
                for event in msg[1]:
                    with contextlib.suppress(Exception):  # a metric must never stop the consumers
                        telemetry.emit(event)
            else:
                self._replies.put(msg)

    def wait_ready(self) -> None:
        """Before the first commit: the consumers read their position when they start, so they must
        have started before the writer stores anything (or they would take it as one catch-up)."""
        if self._ready:
            return
        self._expect("ready", READY_TIMEOUT_SECS)
        self._ready = True

    def _expect(self, what: str, timeout: float | None = None) -> None:
        try:
            msg = self._replies.get(timeout=timeout)
        except queue.Empty:
            msg = ("error", "it did not start")
        if msg[0] == "gone":
            self._proc.join(5)
            msg = ("error", f"it exited (code {self._proc.exitcode})")
        if msg[0] != what:
            self._failed = str(msg[1]) if msg[0] == "error" else f"unexpected {msg[0]!r}"
            if msg[0] == "error" and len(msg) == 4:  # a ConfigError there (e.g. detect.yaml): the same error here
                raise ConfigError(msg[2], msg[3])
            raise ConsumerProcessError(f"detection/credentials process: {self._failed}")

    def _send(self, *msg: Any) -> None:
        self.wait_ready()
        if self._failed is not None:
            raise ConsumerProcessError(f"detection/credentials process: {self._failed}")
        if not self._replies.empty():  # it only ever speaks first to say it failed
            self._expect("ok")
        try:
            self._conn.send(msg)
        except (BrokenPipeError, ConnectionResetError):
            self._expect("ok")  # says why it is gone
            raise

    def consume(self, records: list[Record], store: Any) -> None:
        self._send("batch", encode_records(records))

    def delivered(self, sources: set[str]) -> None:
        self._send("delivered", sorted(sources))

    def arrived(self, records: list[Record]) -> None:
        self._send("arrived", encode_records(records))

    def tick(self, store: Any) -> None:
        self._send("tick")

    def close(self) -> None:
        """Let the consumers finish (release what they hold, deliver alerts) and wait for the process."""
        try:
            if self._failed is None and self._proc.is_alive():
                self._send("close")
                self._expect("closed")
        finally:
            self._proc.join(timeout=60)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._reader.join(timeout=5)  # it has emitted the last events (the pipe is at EOF)
            self._conn.close()


class _Channel(Protocol):
    """The child's end of the pipe to the writer (a ``multiprocessing`` pipe end)."""

    def send(self, obj: Any) -> None: ...

    def recv(self) -> Any: ...

    def close(self) -> None: ...


def _main(options: Any, factories: list[Factory], conn: _Channel, quiet: bool) -> None:
    from kubetrail.store import open_store
    from kubetrail.store.sqlite_schema import set_cache_kib

    # The writer decides when this process stops (``close``): a Ctrl-C or a SIGTERM sent to the whole
    # process group must not kill it with alerts undelivered (the writer kills it after 60 s at worst).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if quiet:
        sys.stdout = sys.stderr
    ordering.set_budget(MEMORY_BYTES, PARSED_BYTES)
    set_cache_kib(CACHE_KIB)
    events: list[telemetry.Event] = []
    telemetry.listen(events.append)
    telemetry.log.disabled = True  # each event is logged once, by the writer, which emits it again
    store = None
    try:
        store = open_store(options.store or options.data_dir, data_dir=options.data_dir)
        consumers = [c for c in (f(store, options) for f in factories) if c is not None]
        tune_gc()
        _say(conn, events)
        conn.send(("ready",))
        while True:
            more = _handle(conn, consumers, store)
            _say(conn, events)
            if not more:
                break
        conn.send(("closed",))
    except BaseException as exc:  # noqa: BLE001 - said to the writer, which raises it
        with contextlib.suppress(OSError):
            _say(conn, events)
            if isinstance(exc, ConfigError):  # raised as itself in the writer: a bad setting exits 2 naming its key
                conn.send(("error", f"{type(exc).__name__}: {exc}", exc.where, exc.message))
            else:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if store is not None:
            store.close()
        conn.close()


def _say(conn: _Channel, events: list[telemetry.Event]) -> None:
    """The telemetry events emitted here since the last time, for the writer to emit."""
    if events:
        batch = events[:]
        del events[:]
        conn.send(("events", batch))


def _handle(conn: _Channel, consumers: list[Any], store: Any) -> bool:
    """One message from the writer; False after ``close``."""
    from kubetrail.pipeline import _each  # the same "run every consumer, raise the first failure"

    msg = conn.recv()
    what = msg[0]
    if what == "batch":
        records = decode_records(msg[1])
        del msg  # the encoded batch (~10 MB of RequestResponse records) is not kept while they work
        try:
            _each(consumers, lambda c: c.consume(records, store))
        finally:
            batch_done()
    elif what == "delivered":
        labels = set(msg[1])
        _each([c for c in consumers if getattr(c, "delivered", None) is not None], lambda c: c.delivered(labels))
    elif what == "arrived":
        dups = decode_records(msg[1])
        _each([c for c in consumers if getattr(c, "arrived", None) is not None], lambda c: c.arrived(dups))
    elif what == "tick":
        _each([c for c in consumers if getattr(c, "tick", None) is not None], lambda c: c.tick(store))
    elif what == "close":
        ordering.drain_together(consumers)  # what their close would drain, slice by slice
        _each(consumers, lambda c: c.close())
        return False
    return True
