"""Replaying the stored records a consumer has not seen yet, for every consumer that keeps a
``next_leaf`` in the store (the credential inventory, detection).

A consumer's position commits with (or right after) its own writes, and the store commits first,
so after a crash the consumer is behind the store, never ahead: on its next start, or when a batch
arrives after a gap (another writer stored records), it reads what it missed in leaf order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrail.record import Record

CATCH_UP_CHUNK = 2000


def catch_up(store: Any, next_leaf: Callable[[], int], apply: Callable[[list[Record]], None],
             until: int | None = None, chunk: int = CATCH_UP_CHUNK) -> int:
    """Apply every stored record from ``next_leaf()`` to ``until`` (default: the end) in chunks;
    ``apply`` must advance ``next_leaf``. Returns how many records were applied."""
    end = store.size() if until is None else until
    done = 0
    while (start := next_leaf()) < end:
        records = list(store.records_by_index(start, min(start + chunk, end)))
        if not records:
            break
        apply(records)
        done += len(records)
    return done


def apply_in_order(store: Any, records: list[Record], next_leaf: Callable[[], int],
                   apply: Callable[[list[Record]], None]) -> None:
    """A consumer's ``consume``: skip what it has already seen, replay a gap before this batch
    (records another writer stored, or ones a crash kept from it), then apply the rest."""
    start = next_leaf()
    fresh = [r for r in records if r.leaf_index is not None and r.leaf_index >= start]
    if not fresh:
        return
    if (first := fresh[0].leaf_index or 0) > start:
        catch_up(store, next_leaf, apply, until=first)
    apply(fresh)
