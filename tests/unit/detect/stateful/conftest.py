"""Records built from real-shaped audit events (``kubetrail.testing.make_event`` + ``to_record``)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kubetrail.record import Decoded, Record, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event

_ids = itertools.count(1)


def event_record(t: float, **kw: Any) -> Record:
    """An audit record at ``t`` seconds after 2025-01-01T00:00:00Z; ``kw`` as for ``make_event``, plus
    ``user_extra`` for ``user.extra``."""
    n = next(_ids)
    user_extra = kw.pop("user_extra", None)
    secs = int(t)
    stamp = f"2025-01-01T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{n % 1000000:06d}Z"
    kw.setdefault("time", stamp)
    ev = make_event(f"aid-{n:06d}", **kw)
    if user_extra is not None:
        ev["user"]["extra"] = user_extra
    r = to_record(Decoded(event=ev, format="event", position=str(n)), SourceRef(stream="audit"))
    r.leaf_index = n
    return r


@pytest.fixture
def mk() -> Any:
    return event_record
