"""Random interleavings of writes, rename rotations, copytruncates, polls and crashes lose no line.

The one documented limit is honoured by the model: a copytruncate of a live file the tailer has
never seen non-empty (created, written and truncated within one poll) is not done while it runs.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from kubetrail.sources._tail import Position, Tailer


def simulate(seed: int, steps: int, tmp: str) -> tuple[set[int], int, list[bytes]]:
    rng = random.Random(seed)
    log = os.path.join(tmp, "audit.log")
    open(log, "wb").close()
    fh = open(log, "ab")  # noqa: SIM115
    got: set[int] = set()
    garbled: list[bytes] = []
    committed: str | None = None
    t: Tailer | None = Tailer(log, None)
    n = rot = 0

    def poll() -> None:
        nonlocal committed
        assert t is not None
        for lines, pos in t.poll():
            for line in lines:
                if line.startswith(b'{"n": '):
                    got.add(int(line[6:line.index(b",")]))
                else:
                    garbled.append(line)
            committed = pos.dumps()

    for _ in range(steps):
        r = rng.random()
        if r < 0.5:
            fh.write(b'{"n": %d, "pad": "%s"}\n' % (n, b"x" * 300))
            fh.flush()
            n += 1
        elif r < 0.56:
            rot += 1
            fh.close()
            os.rename(log, f"{log}.{rot}")
            fh = open(log, "ab")  # noqa: SIM115
        elif r < 0.62:
            if t is not None and (t.live is None or t.live.pos.fp_len == 0):
                continue
            rot += 1
            shutil.copyfile(log, f"{log}.{rot}")
            fh.truncate(0)
            fh.seek(0)
        elif r < 0.9:
            if t is not None:
                poll()
        elif t is None:
            t = Tailer(log, Position.loads(committed))
        else:
            t.close()
            t = None
    if t is None:
        t = Tailer(log, Position.loads(committed))
    poll()
    t.close()
    fh.close()
    return set(range(n)) - got, n, garbled


@pytest.mark.parametrize("block", range(4))
def test_no_line_lost_or_garbled(block: int, tmp_path) -> None:
    """50 random histories per block, 120 steps each."""
    for seed in range(block * 50, block * 50 + 50):
        d = tmp_path / str(seed)
        d.mkdir()
        missing, n, garbled = simulate(seed, 120, str(d))
        assert not missing, f"seed {seed}: lost {sorted(missing)} of {n}"
        assert not garbled, f"seed {seed}: garbled {garbled[:2]}"
