"""The overview facts: one document for ``kubetrail status --json``, ``/api/v1/status`` and the ``/``
page (one shared serialisation). ``problems`` lists why ``status`` exits non-zero: a source silent
for longer than ``silence_secs`` (DATA/detect.yaml, as the Audit Log Silence detector uses), or a
trail that fails verify.

Source liveness comes from two clocks: the newest *event time* stored per source, and the wall
time a source last *delivered* (the silence detector's state, kept while ``run`` is live). A
source is silent when the newer of the two is older than ``silence_secs``. Files ingested once
(``ingest``) are history, not live sources: they are listed but never called silent. Only audit
sources can be silent: a node's container or journal logs are quiet whenever its workloads are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from kubetrail.alerts.alert import PRIORITIES
from kubetrail.alerts.store import settings_for
from kubetrail.errors import KubetrailError
from kubetrail.record import SourceRef
from kubetrail.store.api import Store
from kubetrail.timefmt import format_ns
from kubetrail.trail import keys
from kubetrail.trail.verify import verify_store

DAY_NS = 86_400 * 10**9


def _t(ns: int | None) -> str | None:
    return format_ns(ns) if ns is not None else None


def _arrivals(store: Store) -> dict[str, int]:
    """Wall time (ns) each source last delivered, from the Audit Log Silence detector's state."""
    out: dict[str, int] = {}
    for key, value in store.state.items("silence"):
        try:
            wall = orjson.loads(value).get("wall")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(wall, int):
            out[key] = wall
    return out


def _is_live(label: str) -> bool:
    """Live sources deliver continuously; ``ingest`` (stream ``file:…``) reads history once."""
    return not SourceRef.parse(label).stream.startswith("file:")


RATE_WINDOW_NS = 300 * 10**9  # events/s are averaged over the last 5 minutes of event time


def sources(store: Store, now_ns: int, silence_secs: float) -> list[dict[str, Any]]:
    arrivals = _arrivals(store)
    recent = {(label, kind): n for label, kind, n, _, _ in store.sources(since=now_ns - RATE_WINDOW_NS)}
    out = []
    for label, kind, n, first, last in store.sources():
        arrived = arrivals.get(label)
        newest = max(last, arrived or 0)
        live = _is_live(label)
        quiet = (now_ns - newest) / 1e9
        out.append({"source": label, "kind": kind, "records": n, "first_event": _t(first), "last_event": _t(last),
                    "per_sec_5m": round(recent.get((label, kind), 0) / (RATE_WINDOW_NS / 1e9), 3),
                    "last_arrival": _t(arrived), "live": live, "quiet_secs": round(max(quiet, 0.0), 1),
                    "silent": live and kind == "audit" and quiet > silence_secs})
    return out


def run_verify(store: Store, data_dir: str) -> dict[str, Any]:
    """``kubetrail verify`` over the whole trail, as the status document shows it."""
    try:
        report = verify_store(store, keys.load_verifier(data_dir))
    except KubetrailError as exc:
        return {"ok": False, "reason": str(exc), "checked_at": _t(time.time_ns())}
    out: dict[str, Any] = {**report.as_json(), "checked_at": _t(time.time_ns()), "unsigned": report.unsigned}
    if report.first is not None:
        out["detail"] = report.first.detail
    return out


def trail_facts(store: Store, now_ns: int, verify: Callable[[], dict[str, Any]] | None) -> dict[str, Any]:
    latest = store.trail.latest_checkpoint()
    signed_ns = store.trail.latest_signed_ns()
    return {
        "size": store.size(),
        "checkpoint": None if latest is None else {
            "size": latest[0], "root": latest[1].hex(), "signed_at": _t(signed_ns),
            "age_secs": round((now_ns - signed_ns) / 1e9, 1) if signed_ns is not None else None},
        "verify": verify() if verify is not None else None,
    }


def alert_facts(store: Store, now_ns: int) -> dict[str, Any]:
    total = store.alerts.count_by_priority()
    recent = store.alerts.count_by_priority(since=now_ns - DAY_NS)
    order = [p for p in PRIORITIES if p in total] + sorted(p for p in total if p not in PRIORITIES)
    return {"total": sum(total.values()),
            "by_priority": [{"priority": p, "total": total[p], "last_24h": recent.get(p, 0)} for p in order]}


def overview(store: Store, data_dir: str, now_ns: int | None = None,
             verify: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status document (a contract: add fields, never rename). ``verify`` gives the verify
    result (``run_verify``, or a cached one in ``serve``); None leaves it out."""
    now = time.time_ns() if now_ns is None else now_ns
    silence_secs = settings_for(data_dir).stateful.silence_secs
    srcs = sources(store, now, silence_secs)
    kinds: dict[str, list[float]] = {}
    for s in srcs:
        k = kinds.setdefault(s["kind"], [0, 0.0])
        k[0] += s["records"]
        k[1] += s["per_sec_5m"]
    trail = trail_facts(store, now, verify)
    problems = [f"source {s['source']} has delivered nothing for {s['quiet_secs']:.0f}s (silence_secs "
                f"{silence_secs:.0f})" for s in srcs if s["silent"]]
    if trail["verify"] is not None and not trail["verify"]["ok"]:
        v = trail["verify"]
        problems.append(f"the trail fails verify: {v.get('reason')}"
                        + (f" at leaf {v['first_bad_index']}" if "first_bad_index" in v else ""))
    return {
        "generated_at": format_ns(now),
        "data_dir": data_dir,
        "silence_secs": silence_secs,
        "records": store.size(),
        "kinds": [{"kind": k, "records": int(n), "per_sec_5m": round(rate, 3)} for k, (n, rate) in sorted(kinds.items())],
        "sources": srcs,
        "trail": trail,
        "alerts": alert_facts(store, now),
        "credentials": {"total": store.credentials.count()},
        "counters": store.counters(),
        "problems": problems,
        "ok": not problems,
    }
