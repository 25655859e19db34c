"""Audit silence: a source that stops sending events (a disabled audit log, a cut webhook).

Two clocks, as the catalog asks:

* **Event time (batch and live)**: when a source's next event comes more than ``silence_secs``
  after its previous one, the gap is reported with both records as evidence. (Comparing one
  source's clock with another's is left out on purpose: ingesting files one after the other would
  make every earlier file look "silent".)
* **Wall time (live)**: ``tick(now_ns)`` reports a source whose last event *arrived* more than
  ``silence_secs`` ago; the ``run`` loop calls it through the consumer's ``tick``.

A source is the record's ``cluster/node/stream`` label. Last-seen times are kept in the store. An
event delivered by two paths (log file and webhook) is stored once, under the first path's label;
the other path's deliveries still count as arrivals for the wall-clock check (``delivered``).
"""

from __future__ import annotations

import time
from typing import Any

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import make_alert
from kubetrail.detect.stateful.state import StateStore

RULE = "Audit Log Silence"
TAGS = ["k8s", "T1562.008"]


class AuditSilence:
    name = "silence"
    rules = ((RULE, "Critical"),)

    def __init__(self, state: StateStore, config: StatefulConfig, clock: Any = time.time_ns) -> None:
        self.state = state
        self.silence_ns = int(config.silence_secs * 1e9)
        self.clock = clock
        self._ref: Any = None
        self._src = ""

    def observe(self, record: Any) -> list[Alert]:
        ref = record.source
        if ref is not self._ref:  # the records of one input share their SourceRef: labelled once
            self._ref, self._src = ref, ref.label() or "unknown"
        src = self._src
        prev = self.state.get(self.name, src)
        now_wall = self.clock()
        m = record.meta
        row = [record.time, record.key, m.audit_id, m.stage, record.leaf_index]
        out: list[Alert] = []
        if prev and record.time - prev["ev"][0] > self.silence_ns and not prev.get("reported"):
            out.append(self._alert(record, src, prev["ev"][0], record.time, [prev["ev"], row], "resumed"))
        self.state.put(self.name, src, {"ev": row if not prev or record.time >= prev["ev"][0] else prev["ev"],
                                        "wall": now_wall, "reported": False})
        return out

    def delivered(self, sources: set[str], now_ns: int) -> None:
        """Deliveries that stored nothing new (the same events already came by another path): the
        source is alive for the wall-clock check. Sources never stored stay untracked."""
        for src in sources:
            st = self.state.get(self.name, src)
            if st:
                self.state.put(self.name, src, {**st, "wall": now_ns, "reported": False})

    def tick(self, now_ns: int | None = None) -> list[Alert]:
        """Wall-clock check for live runs: sources whose last event arrived too long ago."""
        now = self.clock() if now_ns is None else now_ns
        out = []
        for src in self.state.keys(self.name):
            st = self.state.get(self.name, src)
            if st and not st.get("reported") and now - st.get("wall", now) > self.silence_ns:
                rec = _Stub(now)
                out.append(self._alert(rec, src, st["ev"][0], None, [st["ev"]], "silent (wall clock)"))
                self.state.put(self.name, src, {**st, "reported": True})
        return out

    def _alert(self, record: Any, src: str, last: int, resumed: int | None, rows: list[list[Any]],
               how: str) -> Alert:
        gap = ((resumed if resumed is not None else record.time) - last) / 1e9
        output = (f"no audit events from {src} for {gap:.0f}s (limit {self.silence_ns / 1e9:.0f}s); {how}")
        ev = [Evidence(key=r[1], audit_id=r[2], stage=r[3], leaf_index=r[4]) for r in rows]
        return make_alert(RULE, "Critical", record, src, output, TAGS, dedup=f"{src}:{last}", evidence=ev,
                          fields={"source": src, "last_event_ns": last, "gap_secs": round(gap, 3)})


class _Stub:
    """The time an alert without a triggering record is raised at."""

    def __init__(self, t: int) -> None:
        self.time = t
