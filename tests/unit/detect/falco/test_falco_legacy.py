"""Falco's own k8s-audit regression expectations (falco_k8s_audit_tests.yaml, 66 cases), reproduced
case by case over the trace files with ``compat: falco`` and ``rule_matching: first``.

The same cases also run as ``current/…`` against today's upstream rules the way falcosecurity/testing
ported them (four renamed rules, the updated ``trust_nginx_container.yaml``; engine-v4 cases left
out), asserting zero alerts where the original expects none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrail.detect.engine import load_rules
from kubetrail.record import Decoded
from kubetrail.sources.files import read_paths
from kubetrail.testing import fixtures_dir

FALCO = fixtures_dir() / "falco"
LEGACY = FALCO / "falco-legacy-tests"


RENAMED = {"K8s Role/Clusterrole Created": "K8s ClusterRole Created",
           "K8s Role/Clusterrole Deleted": "K8s ClusterRole Deleted",
           "K8s Role/Clusterrolebinding Created": "K8s ClusterRoleBinding Created",
           "K8s Role/Clusterrolebinding Deleted": "K8s ClusterRoleBinding Deleted"}


def _current_path(spec: str) -> str | None:
    """falcosecurity/testing's mapping: current rules, no falco_rules.yaml, its trust_nginx_container."""
    if spec.endswith("falco_rules.yaml"):
        return None
    if spec.endswith("k8saudit-rules/k8s_audit_rules.yaml"):
        return str(FALCO / "rules" / "k8s_audit_rules.yaml")
    if spec.endswith("trust_nginx_container.yaml"):
        return str(FALCO / "falcosecurity-testing" / "trust_nginx_container.yaml")
    return _path(spec)


def _path(spec: str) -> str:
    """Map the test file's BUILD_DIR/… and ./rules/… paths onto the fixtures (see MANIFEST.md)."""
    if spec.endswith("falco_rules.yaml"):
        return str(LEGACY / "falcosecurity-rules" / "falco_rules.v1.0.1.yaml")
    if spec.endswith("k8saudit-rules/k8s_audit_rules.yaml"):
        return str(FALCO / "rules" / "k8s_audit_rules.v0.6.0.yaml")
    assert spec.startswith("./rules/"), spec
    return str(LEGACY / spec[2:])


def _cases() -> list[Any]:
    path = LEGACY / "falco_k8s_audit_tests.yaml"
    if not path.is_file():
        return []

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!mux", lambda loader, node: loader.construct_mapping(node, deep=True))
    doc = yaml.load(path.read_text(), Loader=_Loader)["trace_files"]  # noqa: S506 (SafeLoader subclass)
    legacy = [pytest.param("legacy", case, id=name) for name, case in doc.items()]
    current = [pytest.param("current", case, id=f"current/{name}") for name, case in doc.items()
               if not name.startswith("compat_engine_v4") and name != "json_pointer_correct_parse"]
    return legacy + current


CASES = _cases()


@pytest.mark.skipif(not CASES, reason="Falco fixtures not available")
@pytest.mark.parametrize("variant,case", CASES)
def test_falco_expectation(variant: str, case: dict[str, Any]) -> None:
    if variant == "legacy":
        paths = [_path(p) for p in case["rules_file"]]
    else:
        paths = [p for p in map(_current_path, case["rules_file"]) if p]
    rs = load_rules(paths, compat="falco", match="first")
    assert rs.ok, "\n".join(map(str, rs.errors))
    trace = FALCO / case["addl_cmdline_opts"].split("open_params=")[1].strip()
    items = list(read_paths([str(trace)]))
    events = [it.event for it in items if isinstance(it, Decoded)]
    if "stderr_contains" in case:  # fal_01_003: not an audit event; rejected, never evaluated
        assert not events and items
    matches = [m for ev in events for m in rs.evaluate(ev)]
    counts = Counter(m.rule for m in matches)
    if case["detect"]:
        assert matches, "expected an alert"
        if "detect_level" in case:
            assert case["detect_level"].capitalize()[:4] in {m.priority[:4].upper().capitalize() for m in matches}
        for expected in case.get("detect_counts", []):
            for rule, n in expected.items():
                rule = RENAMED.get(rule, rule) if variant == "current" else rule
                assert counts[rule] == n, f"{rule}: {counts[rule]} != {n}; got {dict(counts)}"
    else:
        assert not matches, f"expected no alert, got {dict(counts)}"


def test_all_cases_present() -> None:
    if not CASES:
        pytest.skip("Falco fixtures not available")
    assert len([c for c in CASES if c.values[0] == "legacy"]) == 66
    assert Path(_path("./rules/k8s_audit/allow_namespace_foo.yaml")).is_file()
