"""``secret_text.has_trigger`` scans once (case-sensitive literals searched lower-cased, then compared
with the data): its answer must be exactly that of the two scans it replaced — one case-sensitive pass
over the data, one over its lower-cased copy — or the deep redaction pass would be skipped for an
event that needs it (or run for nothing)."""

from __future__ import annotations

import random

import orjson
from ahocorasick_rs import BytesAhoCorasick

from kubetrail.demo.scenario import generate
from kubetrail.stages import secret_text as st

_RAW = BytesAhoCorasick(st._RAW_LITERALS)
_LOWER = BytesAhoCorasick(st._LOWER_LITERALS)


def two_scans(data: bytes) -> bool:
    if _RAW.find_matches_as_indexes(data):
        return True
    low = data.lower()
    return any(i not in st._QUOTED or st._value_follows(low, end)
               for i, _s, end in _LOWER.find_matches_as_indexes(low, overlapping=True))


def _cases(lit: bytes) -> list[bytes]:
    return [lit, lit.lower(), lit.upper(), lit.swapcase(), lit[:1].upper() + lit[1:].lower()]


def test_one_scan_answers_as_two_scans() -> None:
    rng = random.Random(18)
    samples = [orjson.dumps(e) for e in generate(events=400).events]
    for lit in st._RAW_LITERALS + st._LOWER_LITERALS:
        for variant in _cases(lit):
            for around in (b'{"a":"', b'{"password', b'x', b""):
                samples.append(around + variant + b'":"hunter2-Value","b":1}')
                samples.append(around + variant)
    alphabet = b'aAzZeEyYvV0123456789.:_-"= \\/+%kKlLsStTpP'
    samples += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(20000)]
    hits = 0
    for data in samples:
        want = two_scans(data)
        assert st.has_trigger(data) is want, data
        hits += want
    assert 1000 < hits < len(samples)  # both answers occur many times
