"""Skipping flag rules a credential already satisfies (``flags.evaluate(..., have)``) must change nothing."""

from __future__ import annotations

import inspect
import re

from kubetrail.credentials import flags


def test_every_rule_declares_every_flag_it_can_raise() -> None:
    for rule in flags.RULES:
        raised = set(re.findall(r'_flag\(\s*"([a-z-]+)"', inspect.getsource(rule)))
        assert raised and raised == set(flags.RULE_FLAGS[rule]), rule.__name__
    assert set(flags.RULE_FLAGS) == set(flags.RULES)
