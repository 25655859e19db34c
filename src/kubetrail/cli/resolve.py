"""Turning what a user typed into what the store holds: data dirs, times, keys and key prefixes.

Every command that takes a record key accepts the full key, a unique prefix of it (what the
tables print is a 12-character prefix) or a leaf index, through ``resolve_record``: one rule,
one error message ("ambiguous", "no record"), everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from kubetrail.errors import InputError, NotFoundError
from kubetrail.record import Record
from kubetrail.store import QueryFilters, Store, open_store
from kubetrail.store.rows import MAX_INDEX
from kubetrail.timefmt import parse_when

MIN_PREFIX = 4
_HEX = re.compile(r"^[0-9a-f]+$")


@contextmanager
def open_read(location: str, data_dir: str | None = None) -> Iterator[Store]:
    """The store (a data directory or a ``--store`` URL), opened without writing anything; closed on exit."""
    store = open_store(location, readonly=True, data_dir=data_dir)
    try:
        yield store
    finally:
        store.close()


def when(text: str | None, flag: str) -> int | None:
    """A time filter, refused when it does not fit a 64-bit nanosecond count (999999999d)."""
    if not text:
        return None
    try:
        value = parse_when(text)
    except OverflowError:
        value = MAX_INDEX + 1
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from exc
    if not -MAX_INDEX <= value <= MAX_INDEX:
        raise InputError(f"{flag} {text!r} is out of range")
    return value


def resolve_record(store: Store, text: str) -> Record:
    """The record a user named: a key, a unique key prefix, or a leaf index (``123`` or ``#123``)."""
    text = text.strip()
    if text.startswith("#") and text[1:].isdigit():
        return _by_index(store, text[1:])
    if text.isdigit() and len(text) < 8:  # short numbers are leaf indexes, longer ones key prefixes first
        return _by_index(store, text)
    key = text.lower()
    if not _HEX.match(key):
        raise InputError(f"{text!r} is neither a record key (hex), a key prefix nor a leaf index")
    if len(key) < MIN_PREFIX:
        raise InputError(f"key prefix {text!r} is too short: give at least {MIN_PREFIX} hex digits")
    found = list(store.query(QueryFilters(key_prefix=key, any_kind=True), limit=2))
    if not found and text.isdigit():
        if len(text) > len(str(MAX_INDEX)):
            raise NotFoundError(f"no stored record with key prefix {text!r}, and as a leaf index it is out of "
                                f"range (at most {MAX_INDEX})")
        return _by_index(store, text)
    if not found:
        raise NotFoundError(f"no stored record with key or key prefix {text!r}")
    if len(found) > 1:
        raise NotFoundError(f"key prefix {text!r} is ambiguous: {found[0].key[:16]}… and {found[1].key[:16]}… "
                            "both start with it; give more digits")
    return found[0]


def _by_index(store: Store, digits: str) -> Record:
    if int(digits) > MAX_INDEX:
        raise InputError(f"leaf index {digits} is out of range (at most {MAX_INDEX})")
    r = store.get(str(int(digits)))
    if r is None or r.leaf_index != int(digits):
        raise NotFoundError(f"no stored record with leaf index {int(digits)} (the store holds {store.size()})")
    return r
