"""The detection consumer: built-in rules and stateful detectors over each newly stored batch.

The pipeline calls ``consume(records, store)`` after every committed batch (only records that
were new, each with its ``leaf_index``). For each record the compiled ruleset is evaluated (all
matching rules by default) and every stateful detector observes it; the resulting alerts are
recorded in one transaction with their evidence and outbox rows, then detector state is flushed.
Delivery to sinks happens in a background thread (``alerts/outbox.py``), so a sink that is down
never slows or blocks ingestion.

The ruleset is the built-in ``detect/rules/*.yaml`` plus the ``rules:`` files of
``DATA/detect.yaml``; ``disable:`` turns rules off by name pattern or tag.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kubetrail.alerts.alert import Alert, from_match
from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.outbox import Deliverer, DeliveryReport
from kubetrail.alerts.store import record_alerts, settings_for
from kubetrail.catch_up import apply_in_order, catch_up
from kubetrail.detect.engine import RuleSet, builtin_rule_paths, load_rules
from kubetrail.detect.stateful import build_detectors
from kubetrail.detect.stateful.state import StateStore


def build_ruleset(settings: DetectSettings, extra: Iterable[str] = ()) -> RuleSet:
    """Built-in rules, then the configured files (an override file goes after what it changes)."""
    rs = load_rules(builtin_rule_paths() + list(settings.rules) + list(extra), compat="kubetrail",
                    match=settings.match, min_priority=settings.min_priority)
    rs.raise_for_errors()
    for item in settings.disable:
        if any(item in r.tags for r in rs.rules):
            rs.set_enabled(False, tag=item)
        else:
            rs.set_enabled(False, rule=item)
    return rs


NEXT_LEAF = ("_consumer", "next_leaf")  # detector_state row: the first leaf detection has not seen


class DetectConsumer:
    """``track=True`` (the pipeline's consumer) remembers the next leaf to look at, so records that
    were stored but never seen by detection (a crash or SIGKILL between the store's commit and the
    alerts; re-ingest then counts them as duplicates and hands them to nobody) are detected on the
    next start or at the next gap. Alerts are at-least-once: a crash after the alerts are written
    but before the position is can repeat them, and repeats within the dedup window fold."""

    def __init__(self, store: Any, settings: DetectSettings | None = None, deliver: bool = True,
                 ruleset: RuleSet | None = None, track: bool = False) -> None:
        self.settings = settings or settings_for(store.data_dir)
        self.ruleset = ruleset if ruleset is not None else build_ruleset(self.settings)
        self.state = StateStore(store)
        self.detectors = build_detectors(self.state, self.settings.stateful)
        self.deliverer = Deliverer(store, self.settings) if deliver and self.settings.sinks else None
        self.store = store
        self.stats = {"records": 0, "matches": 0, "alerts": 0, "folded": 0}
        self.last_delivery: DeliveryReport | None = None
        self.track = track
        if track:
            self.catch_up()

    def next_leaf(self) -> int:
        value = self.state.get(*NEXT_LEAF)
        if value is None:  # a store detection never tracked: take what it holds as seen
            value = self.store.size()
            self.state.put(*NEXT_LEAF, value)
            self.state.flush()
        return int(value)

    def catch_up(self, until: int | None = None) -> int:
        """Detect over the stored records from ``next_leaf`` to ``until`` (default: the end)."""
        return catch_up(self.store, self.next_leaf, self._run, until)

    def detect(self, records: Iterable[Any]) -> list[Alert]:
        """The alerts for these records (not yet recorded); detector state is updated in memory."""
        alerts: list[Alert] = []
        for r in records:
            self.stats["records"] += 1
            for m in self.ruleset.evaluate(r):
                self.stats["matches"] += 1
                alerts.append(from_match(m, r))
            for d in self.detectors:
                alerts.extend(d.observe(r))
        return alerts

    def consume(self, records: list[Any], store: Any) -> None:
        if not self.track:
            self._run(records)
            return
        apply_in_order(self.store, records, self.next_leaf, self._run)

    def _run(self, records: list[Any]) -> None:
        alerts = self.detect(records)
        self._record(alerts, self.store)
        if self.track and records:
            self.state.put(*NEXT_LEAF, max(r.leaf_index or 0 for r in records) + 1)
        self.state.flush()

    def _record(self, alerts: list[Alert], store: Any) -> None:
        ids = record_alerts(store, alerts, self.settings)
        new = sum(1 for i in ids if i is not None)
        self.stats["alerts"] += new
        self.stats["folded"] += len(ids) - new
        if new and self.deliverer is not None:
            self.deliverer.wake()

    def tick(self, store: Any) -> None:
        """Wall-clock detectors (audit silence while live)."""
        now = time.time_ns()
        alerts: list[Alert] = []
        for d in self.detectors:
            tick = getattr(d, "tick", None)
            if tick is not None:
                alerts.extend(tick(now))
        self._record(alerts, store)
        self.state.flush()

    def close(self) -> None:
        self.state.flush()
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
    return DetectConsumer(store, track=True)
