"""Detection throughput: events/s with no rules, with built-in + upstream Falco rules, and with 4x the rules.

Usage: .venv/bin/python bench/detect.py [--events N]

Events are the Falco k8s_audit trace files (public fixtures) repeated to N, evaluated with rule
matching ``all``. The 4x ruleset is the same files loaded with every rule copied three more times
under new names, which shows what the (verb, resource) index saves: a rule is only tested on events
it could match.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile
import time

from kubetrail.detect.engine import builtin_rule_paths, load_rules
from kubetrail.sources.formats import read_paths
from kubetrail.testing import fixtures_dir


def _multiplied(paths: list[str], copies: int, out_dir: str) -> list[str]:
    """The rule files plus ``copies`` extra copies of every rule, renamed (lists/macros stay once)."""
    out = list(paths)
    for i in range(copies):
        for p in paths:
            with open(p, encoding="utf-8") as fh:
                text = fh.read()
            text = re.sub(r"^- (list|macro): .*?(?=^- |\Z)", "", text, flags=re.S | re.M)
            text = re.sub(r"^- required_\w+:.*?(?=^- |\Z)", "", text, flags=re.S | re.M)
            text = re.sub(r"^- rule: (.*)$", lambda m, i=i: f"- rule: {m.group(1).strip()} copy{i}", text, flags=re.M)
            dst = os.path.join(out_dir, f"copy{i}-{os.path.basename(p)}")
            with open(dst, "w", encoding="utf-8") as fh:
                fh.write(text)
            out.append(dst)
    return out


def _rate(paths: list[str] | None, events: list[dict], repeat: int = 3) -> tuple[float, int, int]:
    if not paths:
        best = min(_timed(lambda: [None for _ in events]) for _ in range(repeat))
        return len(events) / best, 0, 0
    rs = load_rules(paths, match="all")
    best = min(_timed(lambda: [rs.evaluate(e) for e in events]) for _ in range(repeat))
    matches = sum(len(rs.evaluate(e)) for e in events)
    return len(events) / best, len(rs.rules), matches


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    args = ap.parse_args()
    fx = fixtures_dir() / "falco"
    traces = sorted(glob.glob(str(fx / "trace_files" / "k8s_audit" / "*")))
    base = [d.event for d in read_paths(traces) if hasattr(d, "event")]
    events = (base * (args.events // len(base) + 1))[: args.events]
    upstream = [str(fx / "rules" / "k8s_audit_rules.yaml")]
    rules = builtin_rule_paths() + upstream
    none_rate, _, _ = _rate(None, events)
    one_rate, n1, m1 = _rate(rules, events)
    with tempfile.TemporaryDirectory() as tmp:
        four_rate, n4, m4 = _rate(_multiplied(rules, 3, tmp), events)
    print(f"events: {len(events)} (Falco trace files repeated), python {sys.version.split()[0]}")
    print(f"no rules:                      {none_rate:12,.0f} events/s (loop overhead only)")
    print(f"built-in + upstream ({n1} rules): {one_rate:10,.0f} events/s, {m1} matches")
    print(f"4x rules ({n4} rules):            {four_rate:10,.0f} events/s, {m4} matches")
    print(f"time per event, 4x vs 1x rules: {one_rate / four_rate:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
