"""cri_logs under crashes and a slow reader: random writes, partial lines, kubelet rotations (rename +
gzip) and crashes after a random number of commits; every line must be stored exactly once.

The seeds include the cases that once lost lines: a generation renamed and gzipped between two polls,
a position saved in a .gz read whole, a crash between the tailer's commit and reading a missed .gz,
and inode numbers reused by the filesystem."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from kubetrail.demo.node import SimNode
from kubetrail.record import Record
from kubetrail.sources.cri_logs import CriLogsConfig, CriLogsSource

UID = "0b4d6a3e-1111-4d7c-9a4b-000000000001"


class Crash(Exception):
    pass


class Store:
    def __init__(self) -> None:
        self.keys: dict[str, Record] = {}
        self.positions: dict[str, str] = {}
        self.budget = 0

    def commit(self, records: list[Record], positions: dict[str, str]) -> None:
        if self.budget <= 0:
            raise Crash
        self.budget -= 1
        for r in records:
            self.keys.setdefault(r.key, r)
        self.positions.update(positions)


def poll(src: CriLogsSource, store: Store) -> None:
    for path, pod in src.discover():
        if path not in src.files:
            src._add(path, pod, store.positions.get, from_end=False)
    for w in list(src.files.values()):
        src._poll_file(w, store.commit)


@pytest.mark.parametrize("seed", [0, 9, 41, 62, *range(100, 116)])
def test_random_rotations_and_crashes_store_every_line_once(tmp_path: Path, seed: int) -> None:
    """Exactly once, whatever the interleaving of writes, rotations, polls and crashes."""
    rng = random.Random(seed)
    node = SimNode(str(tmp_path), partial_bytes=64, max_files=1000)
    node.start_pod("shop", "web-1", UID, ["web"])
    store = Store()
    src: CriLogsSource | None = None
    seq = 0
    for _ in range(300):
        r = rng.random()
        if r < 0.5:
            seq += 1
            node.write(UID, "web", f"#{seq} " + "y" * rng.choice([5, 100, 300]), rng.choice(["stdout", "stderr"]))
        elif r < 0.6:
            node.rotate(UID, "web")
        elif r < 0.65:
            seq += 1
            node.write_torn(UID, "web", f"#{seq} first ", "second")
        else:
            if src is None:
                src = CriLogsSource(CriLogsConfig(root=str(tmp_path), node="n"))
                store.budget = rng.randint(0, 6)
            try:
                poll(src, store)
            except Crash:
                src.close()
                src = None
    if src is not None:
        src.close()
    src = CriLogsSource(CriLogsConfig(root=str(tmp_path), node="n"))
    store.budget = 1 << 30
    for _ in range(3):
        poll(src, store)
    src.close()
    want = Counter((stream, text) for (_, _, stream, text) in node.written)
    got = Counter((r.log().stream, r.body.decode()) for r in store.keys.values())
    assert got == want, f"missing {sorted(want - got)[:3]} extra {sorted(got - want)[:3]}"
