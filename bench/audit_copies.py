"""A long audit log from a shorter one: N copies, each a day later and with its own auditIDs.

    .venv/bin/python bench/audit_copies.py IN OUT --copies 5

For the memory bench of issue 18 (a 5 GB file): generating 1.7M requests with ``audit_events.py``
takes hours here, copying a 1 GiB log five times a minute. Copy ``k`` (from 0) moves every
timestamp of the demo's day (``2026-03-14``, and the one event of the day before) ``k`` days later,
so event time keeps rising across copies as an apiserver's would, and sets the version digit of
each auditID (a UUIDv4's ``4``) to ``4 + k``, so no event of one copy is a duplicate of another's.
Bodies are otherwise the input's: the same users, objects and credentials every day.
"""

from __future__ import annotations

import argparse
import re

AUDIT_ID = re.compile(rb'("auditID":"[0-9a-f]{8}-[0-9a-f]{4}-)4')
DAY, DAY_BEFORE = 14, 13
BLOCK = 64 << 20


def copy(src: str, out: str, copies: int) -> None:
    if not 1 <= copies <= 12:
        raise SystemExit("--copies must be 1 to 12 (one hex digit of version per copy, days in March)")
    with open(out, "wb") as fh:
        for k in range(copies):
            with open(src, "rb") as inp:
                while block := inp.read(BLOCK):
                    block += inp.readline()
                    if k:
                        block = block.replace(b"2026-03-%02dT" % DAY, b"2026-03-%02dT" % (DAY + k))
                        block = block.replace(b"2026-03-%02dT" % DAY_BEFORE, b"2026-03-%02dT" % (DAY_BEFORE + k))
                        block = AUDIT_ID.sub(rb"\g<1>" + b"%x" % (4 + k), block)
                    fh.write(block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--copies", type=int, default=5)
    args = ap.parse_args()
    copy(args.input, args.out, args.copies)


if __name__ == "__main__":
    main()
