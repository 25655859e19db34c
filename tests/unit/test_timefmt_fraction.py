"""``parse_rfc3339_ns`` on the apiserver's own form (``…T12:00:00.123456Z``, twice per event): the
short path reads the fraction in one step, and like the general path it answers None for what a
64-bit column cannot hold (years before 1678 or after 2262) and for digits ``int`` cannot read
("²"): before, those raised or returned an integer the store refused, and the event was rejected
instead of stored with a "not indexed" note (the hostile suite's time-*-frac cases)."""

from __future__ import annotations

import random

from kubetrail.timefmt import _epoch_seconds, _parse_rest, parse_rfc3339_ns

INT64 = (-(1 << 63), (1 << 63) - 1)


def _values(rng: random.Random) -> list[str]:
    heads = ["2024-05-01T10:00:00", "1970-01-01T00:00:00", "2262-04-11T23:47:16", "1677-09-21T00:12:43",
             "2300-01-01T00:00:00", "1600-01-01T00:00:00", "0001-01-01T00:00:00", "2024-02-30T00:00:00"]
    chars = "0123456789²٣.Zz+-: x"
    out = []
    for _ in range(20_000):
        tail = "".join(rng.choice(chars) for _ in range(rng.randrange(0, 14)))
        if rng.random() < 0.6:
            tail = "." + "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 12))) + rng.choice(["Z", "z", "+01:00", ""])
        out.append(rng.choice(heads) + tail)
    return out


def test_the_short_path_answers_as_the_general_reading() -> None:
    shortcut = 0
    for value in _values(random.Random(18)):
        try:
            secs = _epoch_seconds(value[:19])
        except ValueError:
            assert parse_rfc3339_ns(value) is None, value
            continue
        assert parse_rfc3339_ns(value) == _parse_rest(value, secs), value
        shortcut += value.endswith("Z") and value[19:20] == "."
    assert shortcut > 2000  # the short path was exercised


def test_out_of_range_and_unreadable_fractions_are_no_time() -> None:
    assert parse_rfc3339_ns("2024-05-01T10:00:00.123456Z") == 1714557600123456000
    assert parse_rfc3339_ns("2262-04-11T23:47:16.854775807Z") == INT64[1]
    assert parse_rfc3339_ns("2262-04-11T23:47:16.854775808Z") is None
    assert parse_rfc3339_ns("1677-09-21T00:12:43.145224192Z") == INT64[0]
    for value in ("2300-01-01T00:00:00.5Z", "1600-01-01T00:00:00.5Z", "2024-01-01T00:00:00.\u00b2Z",
                  "2024-01-01T00:00:00.5\u00b2Z"):
        assert parse_rfc3339_ns(value) is None, value
    assert parse_rfc3339_ns("2024-01-01T00:00:00.\u0663Z") == 1704067200300000000  # a decimal digit int() reads
