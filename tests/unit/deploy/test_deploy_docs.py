"""Every `sh` block of docs/deploy.md runs, in order, in a temporary workspace.

`kubetrail` and `openssl` are the real ones. The tools that need a cluster or a cloud account
(`kubectl`, `docker`, `aws`, `gcloud`, `az`, `curl`) are recorders: they log their arguments and, for
the cloud CLIs, answer with recorded provider output (the posture fixtures, export files built from
the public corpus). The recorded `kubectl` calls are then checked against the manifests: every
applied path renders, every Secret created is one the manifests use (and every Secret they use is
created), every object named in `rollout status`/`port-forward`/`create job --from` exists.
The node's `/etc/kubernetes` is a temporary directory holding a kubeadm apiserver manifest.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kustomize_render import Obj, render

from kubetrail.testing import fixtures_dir

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "deploy.md"
POSTURE = ROOT / "tests" / "data" / "posture"
KUBE = ROOT / "deploy" / "kubernetes"

RECORDER = r"""#!/bin/sh
# records "$@" (one call per line, fields separated by \037) and plays recorded provider output
name=$(basename "$0")
printf '%s' "$name" >> "$CALLS"; for a in "$@"; do printf '\037%s' "$a" >> "$CALLS"; done; echo >> "$CALLS"
for last in "$@"; do :; done  # the export commands' destination is their last argument
case "$name $1 $2" in
  "aws eks describe-cluster") cat "$REPLAY/eks.json" ;;
  "gcloud container clusters") cat "$REPLAY/gke.json" ;;
  "az monitor diagnostic-settings") [ "$3" = list ] && cat "$REPLAY/aks.json" ;;
  "aws s3 sync") mkdir -p "$last" && cp "$REPLAY/eks-export.gz" "$last/" ;;
  "gcloud storage cp") mkdir -p "$last" && cp "$REPLAY/gke-export.jsonl" "$last/" ;;
  "az storage blob") mkdir -p "$last" && cp "$REPLAY/aks-export.json" "$last/PT1H.json" ;;
esac
exit 0
"""


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


def replay(tmp: Path) -> Path:
    """Provider answers: describe outputs from the posture fixtures, one export file per provider."""
    out = tmp / "replay"
    out.mkdir()
    shutil.copy(POSTURE / "eks-audit-on.json", out / "eks.json")
    shutil.copy(POSTURE / "gke-cluster.json", out / "gke.json")
    shutil.copy(POSTURE / "aks-kube-audit.json", out / "aks.json")
    corpus = fixtures_dir() / "corpus"
    event = json.loads((corpus / "splunk-security-content" / "kubernetes_audit_example_log.jsonl").read_text()
                       .splitlines()[0])
    message = {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/aws/eks/prod/cluster",
               "logStream": "kube-apiserver-audit-0123", "subscriptionFilters": ["kubetrail"],
               "logEvents": [{"id": "1", "timestamp": 1714557600000, "message": json.dumps(event)}]}
    # what Firehose writes to S3: the subscription's gzip+base64 records, one per line, in a gzip object
    record = base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()
    (out / "eks-export.gz").write_bytes(gzip.compress((record + "\n").encode()))
    shutil.copy(corpus / "khi-gke-audit" / "gke-cloud-logging-k8s-audit.jsonl", out / "gke-export.jsonl")
    # what a diagnostic setting writes to a storage account (PT1H.json): one record per line, the
    # event as a JSON string in properties.log
    aks = {"category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
           "properties": {"log": json.dumps(event), "pod": "kube-apiserver-5d8f-x", "stream": "stdout"},
           "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD",
           "time": "2024-05-01T10:00:00.0000000Z"}
    (out / "aks-export.json").write_text(json.dumps(aks) + "\n")
    return out


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    tmp = tmp_path_factory.mktemp("docs")
    work, node, stubs = tmp / "work", tmp / "node", tmp / "bin"
    for d in (work, node / "etc/kubernetes/manifests", node / "etc/kubernetes/pki", stubs):
        d.mkdir(parents=True)
    for name in ("deploy", "Dockerfile", "pyproject.toml", "requirements.lock", "requirements-build.lock", "src",
                 "README.md"):
        (work / name).symlink_to(ROOT / name)
    shutil.copy(POSTURE / "apiserver-good.yaml", node / "etc/kubernetes/manifests/kube-apiserver.yaml")
    for tool in ("kubectl", "docker", "aws", "gcloud", "az", "curl"):
        (stubs / tool).write_text(RECORDER)
        (stubs / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CALLS": str(tmp / "calls"), "REPLAY": str(replay(tmp)), "AKS_ID": "/subscriptions/x/aks/prod",
           "STORAGE_ID": "/subscriptions/x/storage/prodaudit"}
    blocks = sh_blocks()
    assert len(blocks) >= 8
    for i, block in enumerate(blocks):
        script = block.replace("/etc/kubernetes", f"{node}/etc/kubernetes")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, f"block {i} of docs/deploy.md failed:\n{block}\n{result.stdout}\n{result.stderr}"
    assert "--audit-policy-file" in (node / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert (node / "etc/kubernetes/audit/audit-webhook.yaml").exists()
    assert (work / "kubetrail-keys" / "trail.vkey").exists()
    assert len(list((work / "kubetrail-data").iterdir())) > 0, "the provider exports were ingested"
    return [line.split("\x1f") for line in (tmp / "calls").read_text().splitlines()]


def all_objects() -> list[Obj]:
    return [o for overlay in ("kubeadm", "managed") for o in render(KUBE / "overlays" / overlay)]


def _ns(call: list[str]) -> str:
    return call[call.index("-n") + 1] if "-n" in call else "default"


@pytest.mark.needs_fixtures
def test_applied_paths_render(ran: list[list[str]]) -> None:
    applied = [c for c in ran if c[:2] == ["kubectl", "apply"]]
    assert {c[3] for c in applied if c[2] == "-k"} == {"deploy/kubernetes/overlays/kubeadm",
                                                       "deploy/kubernetes/overlays/managed"}
    for c in applied:
        if c[2] == "-k":
            assert render(ROOT / c[3])
        else:
            assert (ROOT / c[3]).is_file()


@pytest.mark.needs_fixtures
def test_secrets_created_are_exactly_the_ones_used(ran: list[list[str]]) -> None:
    created = {(_ns(c), c[c.index("secret") + 2]) for c in ran if c[0] == "kubectl" and "create" in c
               and "secret" in c}
    used = set()
    for o in all_objects():
        text = json.dumps(o)
        for name in re.findall(r'"(?:secretName|name)": "([^"]+)", "key"|"secretName": "([^"]+)"', text):
            used.add((o["metadata"].get("namespace", ""), next(n for n in name if n)))
    assert created == used


@pytest.mark.needs_fixtures
def test_named_objects_exist(ran: list[list[str]]) -> None:
    kinds = {"daemonset": "DaemonSet", "deployment": "Deployment", "statefulset": "StatefulSet",
             "service": "Service", "cronjob": "CronJob"}
    objs = {(o["metadata"].get("namespace", ""), o["kind"], o["metadata"]["name"]) for o in all_objects()}
    named = 0
    for c in (c for c in ran if c[0] == "kubectl"):
        for arg in c:
            m = re.match(r"(?:--from=)?(daemonset|deployment|statefulset|service|cronjob)/(.+)$", arg)
            if m:
                named += 1
                assert (_ns(c), kinds[m.group(1)], m.group(2)) in objs, c
    assert named >= 8


@pytest.mark.needs_fixtures
def test_image_build_uses_the_tag_scheme(ran: list[list[str]]) -> None:
    builds = [c for c in ran if c[:2] == ["docker", "build"]]
    version = re.search(r'^version = "(.*)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert builds and all(c[c.index("-t") + 1].endswith(f"/kubetrail:{version}") for c in builds)
