"""Records Lost in Transit: the collector's per-source ``seq`` tracking (DESIGN.md "Delivery guarantees").

The agent's seal stage numbers each source's records 1, 2, 3… and chains their hashes. Here every
stored record of a sealed source marks its seq as seen; what is missing is a **gap**:

* a **declared** gap arrives as a ``loss`` record (the agent's WAL dropped records under
  ``when_full: drop_oldest``, or quarantined a corrupted region): alerted at once, with
  ``declared_drop: true``;
* an **undeclared** gap (a hole below the highest seq seen) is alerted once it has stayed open for
  ``transit_grace_secs`` of wall time, because several collectors and redeliveries can bring
  records out of order; ``declared_drop: false``.

Both carry ``source``, ``first_seq``, ``last_seq``, ``declared_drop``, ``count`` and ``reason``;
the totals per source are kept (``totals()``) for the metrics. A record whose ``chain`` does not
follow from its predecessor's (checked while a source arrives in order) raises ``Records Altered
in Transit``. Records with ``seq`` 0 (not sealed: ``run``, ``ingest``) are not tracked.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from kubetrail import telemetry
from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import make_alert
from kubetrail.detect.stateful.state import StateStore
from kubetrail.stages.seal import chain_start, next_chain

RULE = "Records Lost in Transit"
ALTERED = "Records Altered in Transit"
TAGS = ["kubetrail", "transport", "T1562"]
LOSS_KIND = "loss"


class TransitGaps:
    name = "transit"
    rules = ((RULE, "Critical"), (ALTERED, "Critical"))
    on_arrival = True  # sees every stored record (any kind, loss records too) at once, in arrival order

    def __init__(self, state: StateStore, config: StatefulConfig, clock: Any = time.time_ns) -> None:
        self.state = state
        self.grace_ns = int(config.transit_grace_secs * 1e9)
        self.clock = clock

    def _load(self, src: str) -> dict[str, Any]:
        st = self.state.get(self.name, src)
        return st if st else {"next": 1, "above": [], "pending": [], "chain": chain_start(src).hex(),
                              "declared": 0, "undeclared": 0}

    def observe(self, record: Any) -> list[Alert]:
        if record.kind == LOSS_KIND:
            return self._declared(record)
        if not record.seq:
            return []
        src = record.source.label()
        st = self._load(src)
        out: list[Alert] = []
        seq = record.seq
        if seq == st["next"]:
            chain = record.chain
            if st["chain"]:
                expected = next_chain(bytes.fromhex(st["chain"]), seq, record.key)
                if expected != record.chain:
                    out.append(self._altered(record, src, seq))
                    chain = expected  # go on from what the chain must be: one alert per bad record
            st["chain"] = chain.hex()
            st["next"] = seq + 1
        elif seq > st["next"]:
            _add(st["above"], seq, seq)
        _settle(st)
        self._pending(st, record)
        self.state.put(self.name, src, st)
        return out

    def _declared(self, record: Any) -> list[Alert]:
        body = orjson.loads(record.body)
        src, first, last = str(body["source"]), int(body["first_seq"]), int(body["last_seq"])
        st = self._load(src)
        if first >= st["next"]:
            _add(st["above"], first, last)
        elif last >= st["next"]:
            st["next"] = last + 1
        count = int(body.get("count", last - first + 1))
        st["declared"] += count if count >= 0 else last - first + 1
        st["pending"] = [p for p in st["pending"] if not (first <= p[0] and p[1] <= last)]
        _settle(st)
        st["chain"] = ""  # the records after a declared loss chain from ones this side never saw
        self.state.put(self.name, src, st)
        reason = str(body.get("reason", "dropped"))
        return [self._alert(record, src, first, last, count, True, reason, [Evidence.of(record)])]

    def _pending(self, st: dict[str, Any], record: Any) -> None:
        """Holes below the highest seq seen; each remembers when it was first seen open."""
        now = self.clock()
        old = {(p[0], p[1]): p for p in st["pending"]}
        holes: list[list[Any]] = []
        start = st["next"]
        for a, b in st["above"]:
            if a > start:
                prev = min((p for (x, y), p in old.items() if x <= a - 1 and y >= start), key=lambda p: p[2],
                           default=None)
                since = prev[2] if prev else now
                ev = prev[3:] if prev else [record.key, record.leaf_index]
                holes.append([start, a - 1, since, *ev])
            start = b + 1
        st["pending"] = holes

    def tick(self, now_ns: int | None = None) -> list[Alert]:
        now = self.clock() if now_ns is None else now_ns
        out: list[Alert] = []
        for src in self.state.keys(self.name):
            st = self.state.get(self.name, src)
            late = [p for p in st.get("pending", []) if now - p[2] >= self.grace_ns]
            if not late:
                continue
            for first, last, _since, key, leaf in late:
                _add(st["above"], first, last)
                st["undeclared"] += last - first + 1
                out.append(self._alert(_Stub(now), src, first, last, last - first + 1, False, "undeclared",
                                       [Evidence(key=key, leaf_index=leaf)]))
            _settle(st)
            st["chain"] = ""
            st["pending"] = [p for p in st["pending"] if p not in late]
            self.state.put(self.name, src, st)
        return out

    def totals(self) -> dict[str, dict[str, int]]:
        """Records lost in transit per source, declared by the agent or found missing here."""
        return {src: {"declared": st.get("declared", 0), "undeclared": st.get("undeclared", 0)}
                for src in self.state.keys(self.name) if (st := self.state.get(self.name, src))}

    def _alert(self, record: Any, src: str, first: int, last: int, count: int, declared: bool, reason: str,
               evidence: list[Evidence]) -> Alert:
        telemetry.emit(telemetry.SourceSeqGapDetected(source=src, first_seq=first, last_seq=last))
        how = f"declared by the agent ({reason})" if declared else "never arrived"
        n = f"{count} record(s)" if count >= 0 else f"up to {last - first + 1} record(s)"
        output = f"{n} of {src} lost in transit: seq {first}..{last}, {how}"
        return make_alert(RULE, "Error" if declared else "Critical", record, src, output, TAGS,
                          dedup=f"{first}-{last}", evidence=evidence,
                          fields={"source": src, "first_seq": first, "last_seq": last, "declared_drop": declared,
                                  "count": count, "reason": reason})

    def _altered(self, record: Any, src: str, seq: int) -> Alert:
        output = f"record seq {seq} of {src} does not follow from the previous record's seal hash"
        return make_alert(ALTERED, "Critical", record, src, output, TAGS, dedup=f"chain-{seq}",
                          fields={"source": src, "seq": seq})


def _add(intervals: list[list[int]], a: int, b: int) -> None:
    """Add [a, b] to sorted, disjoint intervals, merging neighbours."""
    intervals.append([a, b])
    intervals.sort()
    merged: list[list[int]] = []
    for x, y in intervals:
        if merged and x <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], y)
        else:
            merged.append([x, y])
    intervals[:] = merged


def _settle(st: dict[str, Any]) -> None:
    """Move ``next`` over intervals that now touch it."""
    above = st["above"]
    while above and above[0][0] <= st["next"]:
        st["next"] = max(st["next"], above[0][1] + 1)
        above.pop(0)
        st["chain"] = ""


class _Stub:
    def __init__(self, t: int) -> None:
        self.time = t
