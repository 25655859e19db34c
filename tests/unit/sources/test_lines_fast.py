"""``files._Lines.next`` answers a whole line at the read position without the blank-line search
(issue 18, third pass). The general reading it skips (``_next_general``) must agree: both must give the same line
numbers, blank counts and lines (long ones as None) on streams mixing blank and whitespace-only
lines, CRLF, lines over the limit and lines cut by chunk ends."""

from __future__ import annotations

import io
import random

import pytest

from kubetrail.sources import files
from kubetrail.sources.files import _Lines


class _Reference(_Lines):
    """Every line through the general reading (the one the short path skips)."""

    def next(self, limit: int) -> tuple[int, int, bytes | None] | None:
        return self._next_general(limit)


def _all(lines: _Lines, limit: int) -> list[tuple[int, int, bytes | None]]:
    out = []
    while (item := lines.next(limit)) is not None:
        out.append(item)
    return out


def _stream(rng: random.Random) -> bytes:
    pieces = [b"", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"  \t "]
    out = []
    for _ in range(rng.randrange(1, 60)):
        kind = rng.random()
        if kind < 0.3:
            out.append(rng.choice(pieces))  # a blank or whitespace-only line
        else:
            body = bytes(rng.choice(b'{}"ab :,\t\x0c') for _ in range(rng.randrange(1, 40)))
            out.append(rng.choice(pieces) + body + rng.choice([b"", b"\r", b" "]))
    data = b"\n".join(out)
    return data + rng.choice([b"", b"\n", b"\n\n", b" "])


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_the_short_path_reads_as_the_general_reading(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    taken = 0
    for _ in range(400):
        data = _stream(rng)
        limit = rng.choice([5, 20, 1000])
        fast, ref = _all(_Lines(io.BytesIO(data)), limit), _all(_Reference(io.BytesIO(data)), limit)
        assert fast == ref, (data, limit)
        taken += sum(1 for _, blanks, line in fast if blanks == 0 and line)
    assert taken > 1000
