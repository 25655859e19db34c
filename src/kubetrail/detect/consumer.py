"""The detection consumer: built-in rules and stateful detectors over each newly stored batch.

The pipeline calls ``consume(records, store)`` after every committed batch (only records that
were new, each with its ``leaf_index``). The compiled ruleset is evaluated on each record **as it
arrives** (all matching rules by default): one match depends on one record, never on order, and a
responder must not wait for the watermark; aggregation (``alerts/route.py``) folds the matches into
alerts whose stored form is the same whatever the arrival order. The records then wait in the
reorder buffer until the watermark passes them (``ordering.py``) and are detected in event-time
order by what does depend on order: every stateful detector observes them and the audit-ID reuse
check looks for a stored variant (``detect/reuse.py``). The resulting alerts are recorded in one
transaction with their evidence and outbox rows, then detector state (and the buffer's frontier)
is flushed.
Delivery to sinks happens in a background thread (``alerts/outbox.py``), so a sink that is down
never slows or blocks ingestion.

The ruleset is the built-in ``detect/rules/*.yaml`` plus the ``rules:`` files of
``DATA/detect.yaml``; ``disable:`` turns detectors off by id pattern, tag, origin or detector name
(``detect/catalog.py``; a name that matches nothing is a configuration error).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from kubetrail import telemetry
from kubetrail.alerts.alert import Alert, from_match
from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.outbox import Deliverer, DeliveryReport
from kubetrail.alerts.store import note_late_events, record_alerts, settings_for
from kubetrail.catch_up import apply_in_order, catch_up
from kubetrail.detect.catalog import catalog, check_names, disabled_groups
from kubetrail.detect.engine import MATCHES, RuleSet, builtin_rule_paths, load_rules
from kubetrail.detect.reuse import AuditIdReuse
from kubetrail.detect.stateful import build_detectors, max_window_secs
from kubetrail.detect.stateful.state import StateStore
from kubetrail.ordering import Entry, ReorderBuffer, released, restore


def build_ruleset(settings: DetectSettings, extra: Iterable[str] = (), origin: str = "detect.yaml") -> RuleSet:
    """Built-in rules, then the configured files (an override file goes after what it changes).
    ``origin`` names where the settings came from in errors (``detect`` for the config file's section)."""
    rs = load_rules(builtin_rule_paths() + list(settings.rules) + list(extra), compat="kubetrail",
                    match=settings.match, min_priority=settings.min_priority)
    rs.raise_for_errors()
    check_names(settings, catalog(rs), origin)  # a typo under disable: or exceptions: is an error, not a no-op
    for item in settings.disable:
        if any(item in r.tags for r in rs.rules):
            rs.set_enabled(False, tag=item)
        else:
            rs.set_enabled(False, rule=item)
    return rs


NEXT_LEAF = ("_consumer", "next_leaf")  # detector_state row: the first leaf detection has not received
FRONTIER = ("_consumer", "frontier")  # [time, key] of the last record released in event-time order
# [from, until): the leaves that may still be held in the reorder buffer (those ordered after the
# frontier); ``until`` is this consumer's next leaf when it saved (``--no-detect`` moves only next_leaf)
PENDING = ("_consumer", "pending")
LATE_COUNTER = "late"  # store counter: records that arrived after the watermark had passed them
# What waits behind the watermark for rules and stateful detectors. The WAL's loss declarations and
# the seqs of every sealed record go to the arrival detectors (transit) instead, at once.
DETECTED_KINDS = ("audit",)
DISPATCH_LIMIT = 4096  # (verb, resource) pairs whose detectors are remembered


class DetectConsumer:
    """``track=True`` (the pipeline's consumer) remembers the next leaf to receive, so records that
    were stored but never seen by detection (a crash or SIGKILL between the store's commit and the
    alerts; re-ingest then counts them as duplicates and hands them to nobody) are detected on the
    next start or at the next gap. Alerts are at-least-once: a crash after the alerts are written
    but before the position is can repeat them, and repeats within the dedup window fold.

    Rules run on arrival (their alerts are stored and delivered at once; aggregation makes the
    stored alerts order-independent); stateful detectors and sequences run in event-time order
    behind a watermark (``ordering.py``) and give the same alerts whatever order the records arrive in. ``live=True`` (``run``, ``webhook serve``) keeps held records across a restart and
    releases them with wall time (``tick``); otherwise ``close`` releases everything.
    """

    def __init__(self, store: Any, settings: DetectSettings | None = None, deliver: bool = True,
                 ruleset: RuleSet | None = None, track: bool = False, live: bool = False,
                 clock: Callable[[], int] = time.time_ns, origin: str = "detect.yaml") -> None:
        self.settings = settings or settings_for(store.data_dir)
        self.ruleset = ruleset if ruleset is not None else build_ruleset(self.settings, origin=origin)
        self.state = StateStore(store)
        off = disabled_groups(self.settings, catalog(self.ruleset))
        detectors = [d for d in build_detectors(self.state, self.settings.stateful) if d.name not in off]
        # Order-independent detectors that see every record as it arrives, any kind (seq tracking),
        # instead of waiting behind the watermark with the audit records.
        self.arrival = [d for d in detectors if getattr(d, "on_arrival", False)]
        self.detectors = [d for d in detectors if not getattr(d, "on_arrival", False)]
        # (verb, resource) -> the bound ``observe`` of the detectors that act on it (``_observers``)
        self._observe: dict[tuple[str, str], tuple[Callable[[Any], list[Alert]], ...]] = {}
        # detectors that take facts from the parsed event at arrival (``note``), for when they observe
        self._notes = tuple(d.note for d in self.detectors if hasattr(d, "note"))
        self.reuse = AuditIdReuse(store)
        self.deliverer = Deliverer(store, self.settings) if deliver and self.settings.sinks else None
        self.store = store
        self.stats = {"records": 0, "matches": 0, "alerts": 0, "folded": 0, "known": 0, "tuned_out": 0, "late": 0}
        self.last_delivery: DeliveryReport | None = None
        self.track = track
        self.live = live
        self.clock = clock
        frontier = self.state.get(*FRONTIER) if track else None
        self.buffer = ReorderBuffer(int(self.settings.allowed_lateness_secs * 1e9),
                                    frontier=(int(frontier[0]), str(frontier[1])) if frontier else None)
        self.window_ns = int(max_window_secs(self.settings.stateful) * 1e9)
        if track:
            self._restore()
            self.catch_up()

    def next_leaf(self) -> int:
        value = self.state.get(*NEXT_LEAF)
        if value is None:  # a store detection never tracked: take what it holds as seen
            value = self.store.size()
            self.state.put(*NEXT_LEAF, value)
            self.state.flush()
        return int(value)

    def _restore(self) -> None:
        """Hold again what the last process held (``PENDING`` ordered after the frontier)."""
        start, end = self.state.get(*PENDING) or (0, 0)
        restore(self.buffer, self.store, int(start), int(end), self.clock(), kinds=DETECTED_KINDS)

    def _reset(self) -> None:
        """After a failed release: the buffer as the store last saw it (what was popped is held again)."""
        frontier = self.state.get(*FRONTIER) if self.track else None
        self.buffer = ReorderBuffer(self.buffer.lateness_ns,
                                    frontier=(int(frontier[0]), str(frontier[1])) if frontier else None)
        if self.track:
            self._restore()

    def catch_up(self, until: int | None = None) -> int:
        """Detect over the stored records from ``next_leaf`` to ``until`` (default: the end)."""
        return catch_up(self.store, self.next_leaf, self._receive, until)

    def detect(self, records: Iterable[Any], arrival: bool = True) -> list[Alert]:
        """The alerts for these records, in the order given (not yet recorded); detector state is
        updated in memory. The pipeline evaluates rules and the arrival detectors as records arrive
        and the rest behind the reorder buffer (``arrival=False``); this is the direct way."""
        records = list(records)
        alerts: list[Alert] = self._arrived(records) if arrival else []
        return alerts + self._ordered(records)

    def _rules(self, records: list[Any]) -> list[Alert]:
        """Rule matches: one record each, so evaluated as the records arrive. The stateful detectors
        that read the parsed event note what they need from it now, while it is at hand (``note``)."""
        alerts: list[Alert] = []
        evaluate, notes = self.ruleset.evaluate, self._notes
        seen = 0
        for r in records:
            if r.kind != "audit":
                continue
            seen += 1
            found = r.__dict__.pop(MATCHES, None) if hasattr(r, "__dict__") else None
            if found is None:
                found = evaluate(r)
            for m in found:
                if m.leaf_index is None:  # evaluated by a preparation worker, before the store
                    m.leaf_index, m.key = r.leaf_index, r.key
                self.stats["matches"] += 1
                alerts.append(from_match(m, r))
            for note in notes:
                note(r)
        self.stats["records"] += seen
        return alerts

    def _ordered(self, records: list[Any]) -> list[Alert]:
        """What depends on the order of records: stateful detectors, audit-ID reuse."""
        # the reuse check has nothing to say about a batch none of whose auditIDs has two stored variants
        reuse = self.reuse.observe if self.reuse.prepare(records) else None
        dispatch = self._observe
        alerts: list[Alert] = []
        for r in records:
            if r.kind != "audit":
                continue
            m = r.meta
            key = (m.verb, m.resource)
            observers = dispatch.get(key)
            if observers is None:
                if len(dispatch) >= DISPATCH_LIMIT:
                    dispatch.clear()
                observers = dispatch[key] = tuple(d.observe for d in self._observers(m.verb, m.resource))
            for observe in observers:
                found = observe(r)
                if found:
                    alerts.extend(found)
            if reuse is not None:
                found = reuse(r)
                if found:
                    alerts.extend(found)
        return alerts

    def _observers(self, verb: str, resource: str) -> tuple[Any, ...]:
        """The stateful detectors that can act on a request with this verb and resource, in order: a
        detector declaring ``verbs``/``resources`` (``detect/stateful/__init__.py``) ignores the others,
        and most traffic (reads and status updates) concerns only a few detectors. ``_ordered``
        remembers the answer per pair (``_observe``)."""
        return tuple(d for d in self.detectors
                     if (getattr(d, "verbs", None) is None or verb in d.verbs)
                     and (getattr(d, "resources", None) is None or resource in d.resources))

    def _arrived(self, records: list[Any]) -> list[Alert]:
        return [a for r in records for d in self.arrival for a in d.observe(r)] + self._rules(records)

    def consume(self, records: list[Any], store: Any) -> None:
        if not self.track:
            self._receive(records)
            return
        apply_in_order(self.store, records, self.next_leaf, self._receive)

    def _receive(self, records: list[Any]) -> None:
        """Hold the new records; detect the late ones at once and whatever the watermark releases."""
        arrived = self._arrived(records)
        late = self.buffer.add([r for r in records if r.kind in DETECTED_KINDS], self.clock())
        self._release(self.buffer.ready(), late, arrived)
        if self.track and records:
            self.state.put(*NEXT_LEAF, max(r.leaf_index or 0 for r in records) + 1)
        self._save()

    def _release(self, entries: list[Entry], late: list[Any] | None = None, arrived: list[Alert] | None = None) -> None:
        alerts: list[Alert] = list(arrived or [])
        if late:
            alerts += self._late(late)
        for records in released(self.store, entries):
            alerts += self._ordered(records)
        try:
            self._record(alerts, self.store)
        except BaseException:
            self._reset()
            raise

    def _late(self, late: list[Any]) -> list[Alert]:
        """Records behind the watermark: the order-dependent detectors see them now, out of order,
        and say so on every alert they raise and on the alerts already decided without them (within
        the detectors' longest window). Their rule matches were raised on arrival like any other."""
        self.stats["late"] += len(late)
        self.store.count(LATE_COUNTER, len(late))
        note_late_events(self.store, [r.time for r in late], self.window_ns)
        mark = self.buffer.frontier[0] if self.buffer.frontier else 0
        alerts = self._ordered(sorted(late, key=lambda r: (r.time, r.key)))
        for a in alerts:
            a.fields["late"] = {"behind_watermark_secs": round(max(mark - a.time, 0) / 1e9, 3),
                                "note": "decided out of event-time order: the record arrived after "
                                        "the allowed lateness"}
        return alerts

    def _save(self) -> None:
        frontier = self.buffer.frontier
        telemetry.emit(telemetry.DetectLagMeasured(
            lag_seconds=max(0.0, (self.clock() - frontier[0]) / 1e9) if frontier else 0.0,
            pending_records=len(self.buffer)))
        if self.track:
            self.state.put(*FRONTIER, list(self.buffer.frontier) if self.buffer.frontier else None)
            until = self.next_leaf()
            self.state.put(*PENDING, [self.buffer.pending_from(until), until])
        self.state.flush()

    def _record(self, alerts: list[Alert], store: Any) -> None:
        if not alerts:
            return
        tally: dict[str, int] = {}
        ids = record_alerts(store, alerts, self.settings, tally)
        new = sum(1 for i in ids if i is not None)
        self.stats["alerts"] += new
        for what, n in tally.items():
            self.stats[what] += n
        if new and self.deliverer is not None:
            self.deliverer.wake()

    def arrived(self, records: list[Any]) -> None:
        """Records that arrived but were not stored (the trail held their keys): only the arrival
        detectors see them (a sealed source's seqs), with their alerts and state saved now."""
        alerts = self._arrived(records)
        self._record(alerts, self.store)
        self.state.flush()

    def delivered(self, sources: set[str]) -> None:
        """These sources delivered records just now, stored or not (a duplicate of what another path
        stored first): wall-clock detectors (audit silence) count them as alive."""
        now = self.clock()
        for d in self.detectors:
            seen = getattr(d, "delivered", None)
            if seen is not None:
                seen(sources, now)

    def tick(self, store: Any) -> None:
        """Wall-clock work (``run``): the watermark advances with time, then audit silence."""
        now = self.clock()
        self.buffer.advance(now)
        self._release(self.buffer.ready())
        alerts: list[Alert] = []
        for d in [*self.arrival, *self.detectors]:
            tick = getattr(d, "tick", None)
            if tick is not None:
                alerts.extend(tick(now))
        self._record(alerts, store)
        self._save()

    def flush(self) -> None:
        """Release everything held (the end of an ``ingest``: nothing more will arrive)."""
        self._release(self.buffer.drain())
        self._save()

    def drain_some(self, n: int) -> bool:
        """``flush`` a slice at a time (``ordering.drain_together``); nothing when ``close`` would keep
        what is held (``live``)."""
        if self.live:
            return False
        self._release(self.buffer.oldest(n))
        self._save()
        return len(self.buffer) > 0

    def close(self) -> None:
        if not self.live:
            self.flush()
        self._save()
        if self.deliverer is not None:
            self.last_delivery = self.deliverer.close()
            self.deliverer = None


class DetectionSkipped:
    """With detection switched off (``ingest --no-detect``) the records are marked as seen, so a
    later run with detection on does not go back over them (``kubetrail detect`` still can)."""

    def __init__(self, store: Any) -> None:
        self.state = StateStore(store)

    def consume(self, records: list[Any], store: Any) -> None:
        last = max((r.leaf_index for r in records if r.leaf_index is not None), default=None)
        if last is not None and last + 1 > int(self.state.get(*NEXT_LEAF, 0)):
            self.state.put(*NEXT_LEAF, last + 1)
            self.state.flush()

    def close(self) -> None:
        pass


def detect_consumer(store: Any, options: Any) -> DetectConsumer | DetectionSkipped:
    """The pipeline's factory (``pipeline.CONSUMERS``)."""
    if not getattr(options, "detect", True):
        return DetectionSkipped(store)
    settings = getattr(options, "detect_settings", None)
    return DetectConsumer(store, settings=settings, track=True, live=bool(getattr(options, "live", False)),
                          origin="detect" if settings is not None else "detect.yaml")
