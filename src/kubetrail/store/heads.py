"""Integer heads of the record key and the auditID: what the entries table indexes in their place.

A key (hex SHA-256) and an auditID (a UUID, or whatever an ``Audit-ID`` header said) are random: every
batch of inserts lands on leaf pages all over their indexes. Indexed as 64-character text, those two
indexes cost the SQLite writer as much as all the rest of an insert and most of the bytes it writes
(issue 18, ``bench/index_cost.py``: 26 -> 19 µs per row, 7.8 -> 4.8 KiB written per row at 100k rows).
A 60-bit integer in their place keeps one index entry in ~14 bytes instead of ~80.

* ``key_head``: the key's first 15 hex digits as an integer, so a key prefix is a range of heads
  (``kubetrail show 3fa4c1``). A key that is not hex (none kubetrail makes) gets a hashed head above
  every hex one. SQLite keeps it UNIQUE and lets that index refuse a duplicate, as the key's own index
  did; two different keys with one head (about one pair in a billion entries) keep the first's head
  and the second's ``key_head`` is NULL: lookups by key accept a NULL head as well
  (``KEY_HEAD_MATCH``), and ``verify --deep`` checks every head (``store/sqlite_deep.py``).
* ``audit_head``: 60 bits of the auditID's MD5 (not for security: PostgreSQL computes the same one
  with its ``md5()`` in its migration), NULL without an auditID. Not unique: lookups by auditID
  compare the auditID as well.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

HEX_DIGITS = 15  # 60 bits: a signed 64-bit integer in both engines, and PostgreSQL's bit(60) cast
_HASHED = 1 << 60  # heads of keys that are not hex: above every hex head
_HEX = frozenset("0123456789abcdef")

# A lookup by key: the head the key should have, or none (the second of two keys with one head).
KEY_HEAD_MATCH = "(key_head = ? OR key_head IS NULL) AND key = ?"


def text_head(text: str) -> int:
    """60 bits of the text's MD5: an auditID's head (and a head for a key that is not hex)."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: what Python can still hash
        data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(_md5(data).digest()[:8], "big") >> _SHIFT


def _plain_md5() -> Callable[[bytes], Any]:
    """An MD5, called twice per stored event (its row, the reuse check). CPython's own ``_md5``
    (~0.3 µs for an auditID) where the build has it, else ``hashlib.md5`` (OpenSSL's, ~0.7: a context
    allocated per call). A FIPS build's OpenSSL refuses MD5 unless told it is not for security (the
    keyword costs ~0.1 µs a call, so it is passed only where needed)."""
    try:
        import _md5  # type: ignore[import-not-found]

        own: Callable[[bytes], Any] = _md5.md5
        own(b"")
        return own
    except (ImportError, ValueError):
        pass
    try:
        hashlib.md5(b"")
        return hashlib.md5
    except ValueError:
        return functools.partial(hashlib.md5, usedforsecurity=False)


_md5 = _plain_md5()
_SHIFT = 64 - 4 * HEX_DIGITS


def key_head(key: str) -> int:
    """The key's head (see the module doc)."""
    lead = key[:HEX_DIGITS]
    if len(lead) == HEX_DIGITS and _HEX.issuperset(lead):
        return int(lead, 16)
    return _HASHED | text_head(key)


def audit_head(audit_id: str) -> int | None:
    """The auditID's head, None for no auditID (a log line, an event without one)."""
    return text_head(audit_id) if audit_id else None


def prefix_range(prefix: str) -> tuple[int, int] | None:
    """The heads of every hex key that starts with ``prefix`` (lowest, highest), or None when the
    prefix is not lowercase hex (no head range: the lookup reads the key column alone)."""
    if not prefix or not _HEX.issuperset(prefix):
        return None
    lead = prefix[:HEX_DIGITS]
    spare = 4 * (HEX_DIGITS - len(lead))
    low = int(lead, 16) << spare
    return low, low + (1 << spare) - 1


def register(conn: sqlite3.Connection) -> None:
    """The two functions SQLite's migration 0016 computes existing rows' heads with."""
    conn.create_function("kubetrail_key_head", 1, key_head, deterministic=True)
    conn.create_function("kubetrail_audit_head", 1, lambda a: audit_head(a or ""), deterministic=True)


HEAD_ROWS = "SELECT leaf_index, key, key_head, audit_id, audit_head FROM entries ORDER BY leaf_index"


def head_problems(rows: Iterable[tuple[int, str, int | None, str, int | None]],
                  held: Callable[[int], bool]) -> list[tuple[int, str]]:
    """(leaf index, what is wrong) of the rows (``HEAD_ROWS``) whose heads are not their key's and
    auditID's (``verify --deep``). The leaves cover the key and the auditID, not their heads: a
    doctored head hides an entry from lookups by key or auditID, or lets its event be stored again.
    A NULL key head is right only when another entry holds the key's head (``held``)."""
    out: list[tuple[int, str]] = []
    headless: list[tuple[int, int]] = []  # checked once the rows are read: ``held`` may need the connection
    for idx, key, kh, aid, ah in rows:
        try:
            want = key_head(str(key))
            if kh is None:
                headless.append((int(idx), want))
            elif kh != want:
                out.append((int(idx), "its key head is not its key's"))
            if ah != audit_head(str(aid)):
                out.append((int(idx), "its auditID head is not its auditID's"))
        except (TypeError, ValueError):  # a damaged cell: the leaf check's finding, not this one's
            continue
    out += [(idx, "its key has no head, and no other entry holds the key's head")
            for idx, want in headless if not held(want)]
    return sorted(out)
