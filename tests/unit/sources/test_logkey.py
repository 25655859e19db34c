"""The log-line key matches the vectors in docs/specs/log-line-identity.md."""

from __future__ import annotations

import re
from pathlib import Path

from kubetrail.sources._logkey import log_key

SPEC = Path(__file__).parents[3] / "docs" / "specs" / "log-line-identity.md"


def test_spec_vectors_hold() -> None:
    """Each `log_key(...) = hex` vector in the spec is what the code computes."""
    text = SPEC.read_text()
    vectors = re.findall(r"^(log_key\(.*\))\n  = ([0-9a-f]{64})$", text, re.M)
    assert len(vectors) == 2
    for call, want in vectors:
        assert eval(call, {"log_key": log_key}) == want  # noqa: S307 - our own spec's literal calls


def test_every_input_changes_the_key() -> None:
    """Kind, origin, offset, stream, time and body each take part in the key."""
    base = ("container", "cri:a", 0, "stdout", 1, b"x")
    keys = {log_key(*base)}
    for i, other in enumerate(("node", "cri:b", 1, "stderr", 2, b"y")):
        args = list(base)
        args[i] = other
        keys.add(log_key(*args))  # type: ignore[arg-type]
    assert len(keys) == 7
    assert log_key("container", "cri:a", 0, "stdout", None, b"x") != log_key(*base)
