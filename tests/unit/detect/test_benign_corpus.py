"""Issue 15, benign-traffic regression: a quiet cluster raises no alert, on every Kubernetes version and
platform the generator knows (kubetrail.demo.quiet), and every identity it shows is accounted for.

The corpora are generated here, deterministically; scripts/make_benign_corpus.py writes the same
files. First-seen detectors learn for ten minutes (instead of an hour) so that they judge the last
twenty minutes of each half hour too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from quiet_helpers import describe, ingest

from kubetrail.alerts.store import list_alerts
from kubetrail.credentials.report import list_credentials
from kubetrail.demo.quiet import CORPORA, Profile, generate

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("profile", CORPORA, ids=lambda p: p.name)
def test_a_quiet_cluster_raises_no_alert(profile: Profile, tmp_path: Path) -> None:
    events = generate(profile)
    assert len(events) > 1000
    store = ingest(tmp_path / "d", events)
    try:
        alerts = list_alerts(store)
        assert not alerts, f"{profile.name}: {len(alerts)} alerts on benign traffic:\n{describe(alerts)}"
        assert store.size() == len(events)
        # every identity that authenticated is in the inventory
        users = {e["user"]["username"] for e in events if e["user"].get("username")}
        listed = {c["subject"] for c in list_credentials(store)}
        assert users <= listed, users - listed
    finally:
        store.close()


def test_generation_is_deterministic_and_differs_by_profile() -> None:
    a, b = generate(Profile("1.24")), generate(Profile("1.24"))
    assert a == b
    assert generate(Profile("1.24"), seed=16) != a and generate(Profile("1.32")) != a


def test_versions_show_their_credentials() -> None:
    old, new = generate(Profile("1.23")), generate(Profile("1.32"))
    ann = [e for e in old if "authentication.k8s.io/legacy-token" in (e.get("annotations") or {})]
    assert ann and all(e["user"]["username"].startswith("system:serviceaccount:") for e in ann)
    assert any(e["objectRef"]["resource"] == "secrets" and e["verb"] == "create"
               and (e.get("requestObject") or {}).get("type") == "kubernetes.io/service-account-token"
               for e in old if e.get("objectRef"))  # the tokens controller's auto-created Secret
    ids = {(e["user"].get("extra") or {}).get("authentication.kubernetes.io/credential-id", [""])[0][:4]
           for e in new}
    assert {"X509", "JTI="} <= ids
    assert not [e for e in new if "authentication.k8s.io/legacy-token" in (e.get("annotations") or {})]


def test_legacy_cluster_lists_the_admin_certificate_first(tmp_path: Path) -> None:
    """Done means: on a 1.20-style cluster the kubeadm admin certificate (system:masters, no CSR) is in
    `creds list --unaccounted`, ranked first, with its request count; legacy tokens raise no alert."""
    events = generate(Profile("1.20"))
    admin = {e["auditID"] for e in events if e["user"].get("username") == "kubernetes-admin"}
    store = ingest(tmp_path / "d", events)
    store.close()
    out = subprocess.run([sys.executable, "-m", "kubetrail", "creds", "list", "--unaccounted", "--json",
                          "--data", str(tmp_path / "d")], capture_output=True, text=True, check=True)
    first = orjson.loads(out.stdout.splitlines()[0])
    assert first["id"] == "unknown/kubernetes-admin" and first["groups"] == ["system:masters"]
    assert first["uses"] == len(admin) > 1 and "CSR API" in first["reason"]


def test_a_hand_made_legacy_token_is_one_alert_however_often_it_is_used(tmp_path: Path) -> None:
    """An upgraded cluster: auto-generated legacy tokens are facts; a token Secret made by a person and
    used forty times is one Warning alert for its creation and one for its use, none Critical."""
    events = generate(Profile("1.28"))
    last = max(e["stageTimestamp"] for e in events)
    base = next(e for e in events if e["user"].get("username") == "alice@example.com")
    made = {**base, "auditID": "made-1", "verb": "create", "requestURI": "/api/v1/namespaces/ci/secrets",
            "objectRef": {"resource": "secrets", "namespace": "ci", "apiVersion": "v1"}, "level": "RequestResponse",
            "responseStatus": {"metadata": {}, "code": 201}, "requestReceivedTimestamp": last, "stageTimestamp": last,
            "requestObject": {"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/service-account-token",
                              "metadata": {"name": "ci-token", "namespace": "ci",
                                           "annotations": {"kubernetes.io/service-account.name": "ci"}}}}
    uses = []
    for i in range(40):
        uses.append({**base, "auditID": f"use-{i}", "user": {"username": "system:serviceaccount:ci:ci",
                                                           "groups": ["system:serviceaccounts", "system:authenticated"]},
                     "sourceIPs": ["10.20.30.40"], "userAgent": "python-requests/2.31.0",
                     "requestReceivedTimestamp": last, "stageTimestamp": last,
                     "annotations": {"authentication.k8s.io/legacy-token": "system:serviceaccount:ci:ci",
                                     "authentication.k8s.io/legacy-token-manual-secret": "ci-token"}})
    store = ingest(tmp_path / "d", events + [made] + uses)
    try:
        alerts = list_alerts(store)
        legacy = [a for a in alerts if a.rule == "Legacy Service Account Token Used"]
        assert len(legacy) == 1 and legacy[0].count == 40 and legacy[0].priority == "Warning"
        assert "Legacy Token Secret Created" in {a.rule for a in alerts}
        assert not [a for a in alerts if a.priority_level <= 2], describe(alerts)
    finally:
        store.close()


def test_the_script_writes_the_corpora(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_benign_corpus.py"), str(tmp_path),
                           "--corpus", "kubeadm-1.20", "--corpus", "eks-1.29", "--minutes", "5"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eks-1.29.log", "kubeadm-1.20.log"]
    lines = (tmp_path / "kubeadm-1.20.log").read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == generate(Profile("1.20"), duration=300)
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "make_benign_corpus.py"), str(tmp_path),
                          "--corpus", "openshift-4.14"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown corpus")
