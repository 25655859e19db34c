"""``ReorderBuffer.pending_from`` (the lowest leaf still held: with the frontier, all a restart needs) is
answered from the held leaves in arrival order instead of a pass over everything held (a busy apiserver's
300 s hold hundreds of thousands, asked after every batch). What must hold: the answer of that pass, for
any arrival and release — leaves in order, out of order, missing (held as -1), records spilled."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrail.ordering import ReorderBuffer
from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event

S = 1_000_000_000
_BASE = to_record(Decoded(make_event("x", time="2024-05-01T10:00:00.000000Z"), "event", "0"),
                  SourceRef(stream="audit-webhook:a"))


def rec(leaf: int | None, sec: int) -> Record:
    r = Record(kind="audit", key=f"{leaf}-{sec}", time=sec * S, source=_BASE.source, body=b"{}", meta=_BASE.meta)
    r.leaf_index = leaf
    return r


def brute(buf: ReorderBuffer, default: int) -> int:
    return min((e[2] for e in buf._items[buf._head:]), default=default)


steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 60)), max_size=6),
              st.booleans()),
    st.tuples(st.just("take"), st.integers(0, 8), st.booleans())), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps=steps, memory=st.sampled_from([1, 3, 10_000]))
def test_the_lowest_held_leaf_is_the_one_a_pass_finds(steps: list[tuple[str, object, bool]], memory: int) -> None:
    buf = ReorderBuffer(lateness_ns=5 * S, memory_limit=memory)
    next_leaf = 0
    for kind, arg, flag in steps:
        if kind == "add":
            batch = []
            for jump, sec in arg:  # type: ignore[union-attr]
                # mostly the store's increasing leaves; now and then an older one or none at all
                leaf: int | None = next_leaf if flag or jump < 35 else (None if jump == 40 else max(0, next_leaf - jump))
                next_leaf += 1
                batch.append(rec(leaf, sec))
            buf.add(batch)
        else:
            buf.oldest(arg) if flag else buf.ready()  # type: ignore[arg-type]
        assert buf.pending_from(next_leaf) == brute(buf, next_leaf)
    buf.drain()
    assert buf.pending_from(next_leaf) == next_leaf == brute(buf, next_leaf)


def test_in_order_arrivals_keep_the_fast_answer() -> None:
    buf = ReorderBuffer(lateness_ns=5 * S)
    buf.add([rec(i, i) for i in range(100)])
    buf.ready()  # releases up to 94 s
    assert buf.pending_from(100) == 95 and buf._leaves is not None
