"""The shallow redaction pass's early return (issue 18, fourth pass): ``redact_event(scan_jwts=False)``
returns at once when the event has neither ``requestObject`` nor ``responseObject`` — the only two
places that pass acts on (a Secret, a TokenRequest's or TokenReview's token). The general pass,
forced here by giving the event an object it leaves alone, must find nothing either and change
nothing: so the early return gives what the general pass gives, for every planted secret (each
shape moved to the places the shallow pass reads: Secrets, TokenRequests, TokenReviews, with and
without their objects), the demo traffic and the hostile cases.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hostile_cases import cases
from secret_cases import planted

from kubetrail.demo.scenario import generate
from kubetrail.stages.redact import redact_event
from kubetrail.stages.redaction_key import RedactionKey

KEY = RedactionKey(b"r" * 32)
INERT: dict[str, Any] = {}  # an object the shallow pass reads and leaves alone (even as a Secret)


def _events() -> list[dict[str, Any]]:
    events = [dict(ev) for ev in generate(seed=5, events=300).events]
    events += [copy.deepcopy(p.event) for p in planted()]
    events += [copy.deepcopy(c.event) for c in cases(copies=1) if isinstance(c.event, dict)]
    out = []
    for ev in events:
        for ref in (ev.get("objectRef"), {"resource": "secrets"}, {"resource": "serviceaccounts", "subresource": "token"},
                    {"resource": "tokenreviews", "apiGroup": "authentication.k8s.io"}):
            out.append({**ev, "objectRef": ref})
    return out


@pytest.mark.parametrize("absent", ["missing", "null"])
def test_without_objects_the_shallow_pass_is_the_general_one(absent: str) -> None:
    events = _events()
    assert len(events) > 1000
    for ev in events:
        bare = {k: v for k, v in ev.items() if k not in ("requestObject", "responseObject")}
        if absent == "null":
            bare |= {"requestObject": None, "responseObject": None}
        early = copy.deepcopy(bare)
        assert redact_event(early, scan_jwts=False, key=KEY) == []
        assert early == bare  # untouched
        general = {**copy.deepcopy(bare), "requestObject": copy.deepcopy(INERT)}  # takes the general path
        assert redact_event(general, scan_jwts=False, key=KEY) == []
        assert {**general, "requestObject": bare.get("requestObject")} == {**bare, "requestObject": bare.get("requestObject")}
        assert general["requestObject"] == INERT


def test_the_early_return_leaves_the_objects_to_the_general_pass() -> None:
    """Events that do carry an object still have it scrubbed (the early return can fail a test)."""
    secret = {"verb": "create", "objectRef": {"resource": "secrets", "namespace": "n", "name": "s"},
              "requestObject": {"kind": "Secret", "data": {"pw": "c2VjcmV0LXZhbHVl"}}}
    found = redact_event(secret, scan_jwts=False, key=KEY)
    assert [r.what for r in found] and secret["requestObject"]["data"]["pw"] != "c2VjcmV0LXZhbHVl"
    token = [p.event for p in planted() if p.shape == "tokenrequest"][0]
    assert redact_event(copy.deepcopy(token), scan_jwts=False, key=KEY)
    assert isinstance(redact_event({"auditID": "a"}, scan_jwts=False, key=KEY), list)
