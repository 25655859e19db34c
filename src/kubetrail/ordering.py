"""Event-time order for the consumers: a reorder buffer behind a watermark (DESIGN.md "Identity and order").

Webhook batches, retries, two apiservers and several collectors deliver events out of order, and
detection (stateful detectors, sequences, rate limits) and the credential inventory (creation,
approval, issuance, uses, flags) would answer differently for each order. So records wait here
until the **watermark** has passed them and are released in ``(time, key)`` order — the key breaks
ties between events of the same nanosecond, so the order is a function of the events alone, never
of their arrival. Each consumer (``detect/consumer.py``, ``credentials/consumer.py``) has its own
buffer and keeps its own frontier in the store.

* watermark = the newest event time seen − ``lateness_ns``; in ``run`` it also advances with wall
  time (``advance(now)``): a record that arrived ``lateness_ns`` ago is released whatever came since,
  so a quiet cluster's alerts still come out. ``drain()`` releases everything (end of ``ingest``).
* A record that arrives after a record ordered after it was released is **late**: it is released at
  once (``add`` returns it), counted in ``late``, and the consumer marks the alerts it touches.
  Exactness holds for every record that arrives within ``lateness_ns`` of the newest event time.
* ``frontier`` (the last released ``(time, key)``) and ``pending_from`` (the lowest leaf still held)
  are all a restart needs: the records in ``[pending_from, next_leaf)`` ordered after the frontier
  are exactly the ones held (everything else was released), so the buffer itself is never written.
* Memory is bounded: beyond ``memory_limit`` held records or ``memory_bytes`` of their bodies, new
  ones are kept as ``(time, key, leaf)`` only and read back from the store when released; and a held
  record keeps its parsed event (``Record.event``, left by ``to_record`` so that no consumer parses
  the body again) only within ``parsed_bytes`` of bodies, since a parsed event takes ~3.5x its JSON.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Protocol

from kubetrail.record import Record
from kubetrail.store.api import Store

DEFAULT_MEMORY_LIMIT = 100_000
DEFAULT_MEMORY_BYTES = 48 << 20  # bodies of held records (and ~RECORD_OVERHEAD each)
DEFAULT_PARSED_BYTES = 16 << 20  # bodies of held records whose parsed event is kept
# What buffers built without explicit caps get in this process (``set_budget``).
_budget = {"memory_bytes": DEFAULT_MEMORY_BYTES, "parsed_bytes": DEFAULT_PARSED_BYTES}
RECORD_OVERHEAD = 1024  # a Record, its meta and key, beyond the body

# (time, key, leaf_index, record or None when spilled, bytes held, bytes of parsed events held): a record
# held in memory holds at least RECORD_OVERHEAD bytes, a spilled one none (``_take`` counts them so)
Entry = tuple[int, str, int, "Record | None", int, int]
_HELD = itemgetter(4)
_PARSED = itemgetter(5)
_LEAF = itemgetter(2)


def set_budget(memory_bytes: int, parsed_bytes: int) -> tuple[int, int]:
    """The caps of every buffer built from now on in this process without its own. The consumers'
    own process (``kubetrail.consumer_process``) lowers them: its two buffers hold the same records,
    and beside the writer it must stay small (issue 18: < 300 MB with workers); a record spilled
    over the cap is read back from the store when released, a parsed event dropped is parsed again.
    Returns the caps it replaced."""
    before = _budget["memory_bytes"], _budget["parsed_bytes"]
    _budget["memory_bytes"] = max(0, int(memory_bytes))
    _budget["parsed_bytes"] = max(0, int(parsed_bytes))
    return before


class ReorderBuffer:
    """Held records sorted by ``(time, key)``. Arrival is mostly in order, so a record is appended
    (O(1)) and only an out-of-order one is inserted (``bisect``); release takes from the front."""

    def __init__(self, lateness_ns: int, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 frontier: tuple[int, str] | None = None, memory_bytes: int | None = None,
                 parsed_bytes: int | None = None) -> None:
        self.lateness_ns = max(0, int(lateness_ns))
        self.memory_limit = memory_limit
        self.memory_bytes = _budget["memory_bytes"] if memory_bytes is None else memory_bytes
        self.parsed_bytes = _budget["parsed_bytes"] if parsed_bytes is None else parsed_bytes
        self.frontier = frontier
        self.max_seen: int | None = frontier[0] if frontier else None
        self._wall_mark: int | None = None  # the watermark wall time has pushed it to (``advance``)
        self.late = 0
        self._items: list[Entry] = []  # sorted; [_head:] are held
        self._head = 0
        self._in_memory = 0
        self._bytes = 0  # held in memory: bodies + RECORD_OVERHEAD each
        self._parsed = 0  # bodies of held records that keep their parsed event
        self._arrivals: deque[tuple[int, int]] = deque()  # (wall ns, newest event time of that arrival)
        # ``pending_from`` without a pass over everything held (a busy apiserver's 300 s of lateness hold
        # hundreds of thousands, asked after every batch): the held leaves in arrival order, increasing as
        # the store gives them, and those released since (dropped from the front lazily). ``_leaves`` is
        # None once a leaf arrived out of order (or none was given): then the pass over everything held.
        self._leaves: deque[int] | None = deque()
        self._gone: set[int] = set()

    def __len__(self) -> int:
        return len(self._items) - self._head

    def is_late(self, time: int, key: str) -> bool:
        return self.frontier is not None and (time, key) <= self.frontier

    def add(self, records: Iterable[Record], now_ns: int | None = None) -> list[Record]:
        """Hold these records; returns the late ones (to be processed at once, out of order)."""
        late: list[Record] = []
        newest: int | None = None
        items = self._items
        # ``is_late``, inlined (this runs for every record of both consumers), without building tuples
        ft, fk = self.frontier if self.frontier is not None else (None, "")
        # the last held entry's (time, key): a record ordered after it is appended
        lt, lk = items[-1][:2] if len(items) > self._head else (None, "")
        in_memory, held_bytes, parsed_bytes = self._in_memory, self._bytes, self._parsed
        limit, max_bytes, max_parsed = self.memory_limit, self.memory_bytes, self.parsed_bytes
        leaves = self._leaves
        last_leaf = leaves[-1] if leaves else -1  # a leaf is >= 0; an entry without one is held as -1
        try:
            for r in records:
                t, key = r.time, r.key
                if ft is not None and (t < ft or (t == ft and key <= fk)):
                    self.late += 1
                    late.append(r)
                    continue
                leaf = r.leaf_index
                if leaf is None:
                    leaf = -1
                size = len(r.body) + RECORD_OVERHEAD
                if in_memory < limit and held_bytes + size <= max_bytes:
                    in_memory += 1
                    held_bytes += size
                    cached = r.__dict__
                    if "_event" not in cached:
                        entry: Entry = (t, key, leaf, r, size, 0)
                    elif parsed_bytes + size <= max_parsed:
                        parsed_bytes += size
                        entry = (t, key, leaf, r, size, size)
                    else:
                        del cached["_event"]  # parsed again if it is needed when released
                        entry = (t, key, leaf, r, size, 0)
                else:
                    entry = (t, key, leaf, None, 0, 0)
                if leaves is not None:
                    if leaf > last_leaf:
                        leaves.append(leaf)
                        last_leaf = leaf
                    else:
                        leaves = self._leaves = None
                if lt is None or t > lt or (t == lt and key > lk):
                    items.append(entry)
                    lt, lk = t, key
                else:
                    bisect.insort(items, entry, lo=self._head, key=_order)
                if newest is None or t > newest:
                    newest = t
        finally:
            self._in_memory, self._bytes, self._parsed = in_memory, held_bytes, parsed_bytes
        if newest is not None:
            if self.max_seen is None or newest > self.max_seen:
                self.max_seen = newest
            if now_ns is not None:
                self._arrivals.append((now_ns, newest))
        return late

    def watermark(self) -> int | None:
        mark = None if self.max_seen is None else self.max_seen - self.lateness_ns
        if self._wall_mark is not None and (mark is None or self._wall_mark > mark):
            mark = self._wall_mark
        return mark

    def advance(self, now_ns: int) -> None:
        """Wall-clock progress (``run``): what arrived ``lateness_ns`` ago may be released now."""
        limit = now_ns - self.lateness_ns
        while self._arrivals and self._arrivals[0][0] <= limit:
            _, newest = self._arrivals.popleft()
            if self._wall_mark is None or newest > self._wall_mark:
                self._wall_mark = newest

    def ready(self) -> list[Entry]:
        """Release, in ``(time, key)`` order, every held record at or before the watermark."""
        mark = self.watermark()
        if mark is None:
            return []
        end = bisect.bisect_right(self._items, mark, lo=self._head, key=_time)
        return self._take(end)

    def drain(self) -> list[Entry]:
        """Release everything held (the end of an ``ingest``)."""
        self._arrivals.clear()
        return self._take(len(self._items))

    def oldest(self, n: int) -> list[Entry]:
        """Release the first ``n`` held records in order, whatever the watermark (``drain_together``)."""
        return self._take(min(self._head + max(0, n), len(self._items)))

    def _take(self, end: int) -> list[Entry]:
        out = self._items[self._head:end]
        if out:
            # summed in C (this runs for every record of both consumers): a held record's size is never 0
            sizes = list(map(_HELD, out))
            self._in_memory -= len(sizes) - sizes.count(0)
            self._bytes -= sum(sizes)
            self._parsed -= sum(map(_PARSED, out))
            self.frontier = (out[-1][0], out[-1][1])
            if self._leaves is not None:
                self._gone.update(map(_LEAF, out))
        self._head = end
        if self._head == len(self._items):  # nothing held: the leaves start afresh
            self._leaves, self._gone = deque(), set()
        if self._head > 4096 and self._head * 2 > len(self._items):
            del self._items[:self._head]  # compact now and then: amortised O(1) per record
            self._head = 0
        return out

    def pending_from(self, default: int) -> int:
        """The lowest leaf still held, or ``default`` (the next leaf to receive) when none is."""
        leaves = self._leaves
        if leaves is None:
            return min(map(_LEAF, self._items[self._head:]), default=default)
        gone = self._gone
        while leaves and leaves[0] in gone:
            gone.discard(leaves.popleft())
        return leaves[0] if leaves else default


def _order(entry: Entry) -> tuple[int, str]:
    return entry[0], entry[1]


def _time(entry: Entry) -> int:
    return entry[0]


def materialise(store: Store, entries: list[Entry]) -> list[Record]:
    """The released records in order, reading back from the store those the buffer did not keep
    (``Store.read_back``: once for both consumers)."""
    missing = [e[2] for e in entries if e[3] is None]
    if not missing:
        return [e[3] for e in entries]  # type: ignore[misc]
    loaded = store.read_back(missing)
    return [e[3] if e[3] is not None else loaded[e[2]] for e in entries if e[3] is not None or e[2] in loaded]


RELEASE_SLICE = 2000  # released records read back and handed over at once (``released``)


def released(store: Store, entries: list[Entry], n: int = RELEASE_SLICE) -> Iterator[list[Record]]:
    """``materialise`` a slice at a time. A watermark that jumps (a gap of hours in event time, the next
    day's file) releases the whole window at once: reading back every spilled record of it together
    cost ~50 MiB at the peak of a 5 GB ingest, once per consumer (issue 18's memory aim)."""
    for i in range(0, len(entries), n):
        yield materialise(store, entries[i:i + n])


class Draining(Protocol):
    def drain_some(self, n: int) -> bool:
        """Release the ``n`` oldest records held, as ``flush`` releases all (nothing if this consumer
        keeps what it holds when closed); True while more are held."""
        ...


def drain_together(consumers: Iterable[object], n: int = RELEASE_SLICE) -> None:
    """The end of an ``ingest``: every consumer's held records released a slice at a time, the consumers
    in turn, rather than one consumer's whole buffer and then the next's. Each slice's records that no
    buffer kept in memory are then read back once for all of them (``Store.read_back`` keeps one slice),
    where a whole drain read them back once per consumer: at a busy apiserver's rate (a 100,000-event log
    spanning 100 s, all of it still held at the end) that was most of the records. Released in the same
    order as ``flush`` would, so the results are the same (tests/unit/test_drain_together.py)."""
    draining: list[Draining] = [c for c in consumers if hasattr(c, "drain_some")]  # type: ignore[misc]
    while draining:
        draining = [c for c in draining if _drained_some(c, n)]


def _drained_some(consumer: Draining, n: int) -> bool:
    """A consumer that fails a slice is left to its ``close``, which drains what it still holds (a failed
    step holds its records again) and raises what fails then; the others go on (as ``pipeline._each``)."""
    try:
        return consumer.drain_some(n)
    except Exception:  # noqa: BLE001 - see above
        return False


def restore(buffer: ReorderBuffer, store: Store, start: int, end: int, now_ns: int, chunk: int = 2000,
            kinds: tuple[str, ...] = ("audit",)) -> int:
    """Hold again what a consumer held when it stopped: the records of ``kinds`` in ``[start, end)``
    ordered after the buffer's frontier (everything else there was released). Returns how many."""
    n = 0
    for lo in range(start, end, chunk):
        held = [r for r in store.records_by_index(lo, min(lo + chunk, end))
                if r.kind in kinds and not buffer.is_late(r.time, r.key)]
        buffer.add(held, now_ns)
        n += len(held)
    return n


def event_order(store: Store, kind: str = "audit") -> Iterator[Record]:
    """Every stored record of ``kind`` in ``(time, key)`` order: the order the buffer releases in (a
    rebuild from the store gives the answer of an in-order delivery, whatever the arrival was)."""
    from kubetrail.store.queries import QueryFilters

    group: list[Record] = []
    for r in store.query(QueryFilters(kind=[kind])):
        if group and r.time != group[0].time:
            yield from sorted(group, key=lambda x: x.key)
            group = []
        group.append(r)
    yield from sorted(group, key=lambda x: x.key)
