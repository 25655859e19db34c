"""The rule index reads its four fields directly (``engine._index_values``): exactly what their
extractors give, in both compat modes, on real and hostile events."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.detect.engine import INDEX_FIELDS, _index_values
from kubetrail.detect.falco import ast
from kubetrail.detect.falco.compiler import Compiler
from kubetrail.detect.falco.context import EventContext
from kubetrail.sources.files import read_paths
from kubetrail.testing import fixtures_dir

ODD: list[dict[str, Any]] = [
    {"auditID": "a", "verb": 5, "user": {"username": ["x"]}, "objectRef": {"resource": None, "subresource": 3}},
    {"auditID": "a", "verb": "get", "user": "alice", "objectRef": "pods"},
    {"verb": "get", "user": {"username": "alice"}, "objectRef": {"resource": "pods"}},  # no auditID: all missing
    {"auditID": "a", "verb": "", "user": {"username": ""}, "objectRef": {"resource": "", "subresource": ""}},
    {"auditID": "a"},
]


@pytest.mark.needs_fixtures
def test_index_values_are_the_fields_extractors() -> None:
    events = [d.event for d in read_paths([str(fixtures_dir() / "corpus"), str(fixtures_dir() / "falco")])
              if hasattr(d, "event")]
    assert len(events) > 100
    for compat in ("kubetrail", "falco"):
        getters = [Compiler(compat).operand(ast.FieldRef(f))[0] for f in INDEX_FIELDS]
        for ev in events + ODD:
            ctx = EventContext(ev)
            assert _index_values(ctx) == tuple(g(EventContext(ev)) for g in getters), ev
