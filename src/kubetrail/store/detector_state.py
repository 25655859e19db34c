"""Detector memory (``detector_state``, migration 0003): JSON values owned by each detector."""

from __future__ import annotations

from collections.abc import Sequence

from kubetrail.store.db import Engine


class DetectorStateTable:
    def __init__(self, engine: Engine) -> None:
        self.db = engine.db

    def get(self, detector: str, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM detector_state WHERE detector = ? AND key = ?",
                              (detector, key)).fetchone()
        return str(row[0]) if row else None

    def items(self, detector: str) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in
                self.db.execute("SELECT key, value FROM detector_state WHERE detector = ?", (detector,))]

    def write(self, gone: Sequence[tuple[str, str]], rows: Sequence[tuple[str, str, str, int]]) -> None:
        self.db.executemany("DELETE FROM detector_state WHERE detector = ? AND key = ?", gone)
        self.db.executemany(
            "INSERT INTO detector_state (detector, key, value, updated_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (detector, key) DO UPDATE SET value = excluded.value, updated_ns = excluded.updated_ns",
            rows)
