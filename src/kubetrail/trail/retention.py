"""Retention as the trail sees it: bodies go, entries and leaf hashes stay, so the trail stays verifiable.

A pruned entry keeps its header (with the body's SHA-256) and its leaf; ``verify`` counts it as
pruned, not tampered. The pruning itself is the store's (``store.retention.apply``): each run is
recorded in ``retention_runs`` (migration 0006) in the transaction that prunes: the age cutoff, the
last leaf index the size rule pruned, and the store's size then. ``verify`` accepts a
NULL body only where a recorded run explains it (``RetentionRuns.explains``), so a body deleted with a
plain ``UPDATE`` is reported as modified instead of passing for retention.
"""

from __future__ import annotations

import bisect
import re

from kubetrail.errors import TrailError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """'500M', '10G', '1024', '2GiB' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise TrailError(f"bad size {text!r}: want a number with an optional K, M, G or T suffix")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


class RetentionRuns:
    """The recorded runs, asked per pruned body: did some run prune the body at this index and time?

    A run explains index ``i`` with event time ``t`` when ``i`` was in the store when it ran
    (``i < size``) and its age rule (``t < before_ns``) or its size rule (``i <= upto_index``) covers
    it. ``recorded`` is False for a store opened read-only before migration 0006 (nothing to check
    against: every pruned body is accepted, as before).
    """

    def __init__(self, runs: list[tuple[int, int | None, int | None]] | None) -> None:
        self.recorded = runs is not None
        runs = runs or []
        self.upto = max((int(u) for _, _, u in runs if u is not None), default=-1)
        aged = sorted((int(size), int(before)) for size, before, _ in runs if before is not None)
        self._sizes = [size for size, _ in aged]
        self._best: list[int] = []  # best[j] = the largest cutoff among aged[j:]
        best = None
        for _, before in reversed(aged):
            best = before if best is None else max(best, before)
            self._best.append(best)
        self._best.reverse()

    def explains(self, index: int, time_ns: int) -> bool:
        if not self.recorded or index <= self.upto:
            return True
        j = bisect.bisect_right(self._sizes, index)  # the runs that saw this index
        return j < len(self._best) and time_ns < self._best[j]
