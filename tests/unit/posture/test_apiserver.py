"""check apiserver: every item passes and fails, from manifests, command lines, kubeadm and managed clusters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.posture import apiserver as api
from kubetrail.posture import managed
from kubetrail.posture.policy.generate import generate

DATA = Path(__file__).parents[2] / "data" / "posture"


def status(checks: list[api.Check]) -> dict[str, str]:
    return {c.id: c.status for c in checks}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake node disk: the generated policy where the good manifest points, the gappy one for the bad."""
    (tmp_path / "etc/kubernetes/audit").mkdir(parents=True)
    (tmp_path / "etc/kubernetes/audit/policy.yaml").write_text(generate("recommended"))
    shutil.copy(DATA / "gappy.yaml", tmp_path / "etc/kubernetes/audit-policy.yaml")
    return tmp_path


def test_good_manifest_passes_everything(root: Path) -> None:
    """Flags, policy lint (3.2.2), JSON format and hostPath mounts all PASS; benchmark from the image tag."""
    cfg = api.from_manifest(str(DATA / "apiserver-good.yaml"))
    assert cfg.version == (1, 34) and api.benchmark_for(cfg.version) == "cis-1.12"
    checks = api.check_apiserver(cfg, str(root))
    assert {c.status for c in checks} == {"PASS"}, [(c.id, c.status, c.detail) for c in checks]
    assert status(checks).keys() >= {"audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize",
                                     "audit-policy-file", "audit-policy-coverage", "audit-log-format"}
    by_id = {c.id: c for c in checks}
    assert by_id["audit-log-path"].cis["cis-1.12"] == "1.2.16" and by_id["audit-log-path"].cis["cis-1.5"] == "1.2.22"
    assert by_id["audit-policy-coverage"].cis["cis-1.12"] == "3.2.2"


def test_bad_manifest_fails_each_item(root: Path) -> None:
    """Each bad setting gives its own FAIL or WARN."""
    checks = api.check_apiserver(api.from_manifest(str(DATA / "apiserver-bad.yaml")), str(root))
    s = status(checks)
    assert s["audit-log-maxage"] == "FAIL" and s["audit-log-maxbackup"] == "FAIL"
    assert s["audit-log-maxsize"] == "WARN"  # 0 disables rotation on 1.36
    assert s["audit-policy-coverage"] == "FAIL"  # gappy policy
    assert s["audit-log-format"] == "FAIL" and s["audit-log-mode"] == "WARN"
    assert s["audit-log-truncate"] == "WARN" and s["audit-webhook-mode"] == "WARN"
    assert s["audit-log-volume"] == "WARN" and s["audit-policy-volume"] == "WARN"


@pytest.mark.parametrize(("flags", "check_id", "expected"), [
    ("", "audit-log-path", "FAIL"),
    ("--audit-log-path=/var/log/a.log", "audit-log-path", "PASS"),
    ("--audit-log-path -", "audit-log-path", "WARN"),
    ("--audit-log-maxage=1", "audit-log-maxage", "FAIL"),
    ("--audit-log-maxage=30", "audit-log-maxage", "PASS"),
    ("--audit-log-maxage=0", "audit-log-maxage", "WARN"),
    ("--audit-log-maxage=-1", "audit-log-maxage", "FAIL"),
    ("--audit-log-maxage=x", "audit-log-maxage", "FAIL"),
    ("--audit-log-maxbackup 9", "audit-log-maxbackup", "FAIL"),
    ("--audit-log-maxbackup=10", "audit-log-maxbackup", "PASS"),
    ("--audit-log-maxsize=99", "audit-log-maxsize", "FAIL"),
    ("--audit-log-maxsize=100", "audit-log-maxsize", "PASS"),
    ("", "audit-log-maxsize", "PASS"),
    ("", "audit-policy-file", "FAIL"),
    ("--audit-policy-file=/nonexistent/policy.yaml", "audit-policy-file", "PASS"),
    ("--audit-policy-file=/nonexistent/policy.yaml", "audit-policy-coverage", "WARN"),
    ("--audit-policy-file=/p.yaml", "audit-backend", "FAIL"),
    ("--audit-log-path=/a --audit-log-format=json", "audit-log-format", "PASS"),
    ("--audit-webhook-config-file=/k --audit-webhook-mode=batch", "audit-webhook-mode", "PASS"),
    ("--audit-webhook-config-file=/k --audit-webhook-mode=blocking-strict", "audit-webhook-mode", "WARN"),
    ("--audit-webhook-truncate-enabled=true --audit-webhook-config-file=/k", "audit-webhook-truncate", "WARN"),
])
def test_cmdline_items(flags: str, check_id: str, expected: str) -> None:
    """One flag at a time, pass and fail."""
    checks = api.check_apiserver(api.from_cmdline(f"/usr/local/bin/kube-apiserver {flags}"))
    assert status(checks)[check_id] == expected


@pytest.mark.parametrize(("version", "maxage", "maxbackup", "maxsize_zero"), [
    ((1, 36), "PASS", "PASS", "WARN"),  # defaults 366/100; 0 = no rotation
    ((1, 35), "WARN", "WARN", "PASS"),  # defaults 0 = unlimited; 0 = 100 MB
    (None, "WARN", "WARN", "WARN"),
])
def test_defaults_depend_on_version(version: tuple[int, int] | None, maxage: str, maxbackup: str,
                                    maxsize_zero: str) -> None:
    """Unset rotation flags are judged by the 1.36 default change."""
    s = status(api.check_apiserver(api.from_cmdline("kube-apiserver --audit-log-path=/a", version)))
    assert (s["audit-log-maxage"], s["audit-log-maxbackup"]) == (maxage, maxbackup)
    z = status(api.check_apiserver(api.from_cmdline("kube-apiserver --audit-log-maxsize=0", version)))
    assert z["audit-log-maxsize"] == maxsize_zero


def test_strict_mode_without_request_received(tmp_path: Path) -> None:
    """blocking-strict with a policy that omits RequestReceived warns that it has no effect."""
    p = tmp_path / "p.yaml"
    p.write_text(generate("minimal"))
    s = status(api.check_apiserver(api.from_cmdline(
        f"kube-apiserver --audit-policy-file={p} --audit-log-path=/a --audit-log-mode=blocking-strict")))
    assert s["audit-log-mode"] == "WARN" and s["audit-policy-coverage"] == "PASS"


def test_proc_cmdline_and_bool_flags() -> None:
    """NUL-separated /proc/PID/cmdline; bool flags do not eat the next token."""
    cfg = api.from_cmdline("kube-apiserver\0--audit-log-path=/a\0--audit-log-truncate-enabled\0--v\x002\0")
    assert cfg.flags["audit-log-path"] == "/a" and cfg.flags["audit-log-truncate-enabled"] == "true"


def test_kubeadm_configs() -> None:
    """extraArgs as a map (v1beta3) and as a name/value list (v1beta4); version from kubernetesVersion."""
    v3 = api.from_kubeadm(str(DATA / "kubeadm-v1beta3.yaml"))
    assert v3.version == (1, 30) and api.benchmark_for(v3.version) == "cis-1.11"
    s3 = status(api.check_apiserver(v3))
    assert s3["audit-log-maxage"] == "PASS" and "audit-log-volume" not in s3 and "audit-policy-volume" not in s3
    v4 = api.from_kubeadm(str(DATA / "kubeadm-v1beta4.yaml"))
    s4 = status(api.check_apiserver(v4))
    assert s4["audit-log-maxage"] == "FAIL" and s4["audit-policy-file"] == "FAIL" and s4["audit-log-volume"] == "WARN"


def test_managed_clusters() -> None:
    """EKS audit log type, AKS kube-audit / kube-audit-admin, GKE always-on admin activity."""
    assert status(managed.check_eks(managed.load_json(str(DATA / "eks-audit-on.json"))))["eks-audit-log"] == "PASS"
    off = status(managed.check_eks(managed.load_json(str(DATA / "eks-audit-off.json"))))
    assert off["eks-audit-log"] == "FAIL" and off["eks-authenticator-log"] == "WARN"
    assert status(managed.check_aks(managed.load_json(str(DATA / "aks-kube-audit.json")))) == {"aks-audit-log": "PASS"}
    admin = status(managed.check_aks(managed.load_json(str(DATA / "aks-admin-only.json"))))
    assert admin == {"aks-audit-log": "PASS", "aks-audit-reads": "WARN"}
    assert status(managed.check_aks(managed.load_json(str(DATA / "aks-none.json"))))["aks-audit-log"] == "FAIL"
    gke = status(managed.check_gke(managed.load_json(str(DATA / "gke-cluster.json"))))
    assert gke["gke-admin-activity"] == "PASS" and gke["gke-data-access"] == "WARN"


def test_cli_exit_codes_and_output(root: Path) -> None:
    """Exit 1 on any FAIL, 0 otherwise; text is kube-bench style; --json ends with a summary."""
    runner = CliRunner()
    bare = runner.invoke(cli, ["check", "apiserver", "--cmdline", "kube-apiserver --audit-log-maxage=1"])
    assert bare.exit_code == 1 and "[FAIL] 1.2.17" in bare.output and "== Remediations ==" in bare.output
    good = runner.invoke(cli, ["check", "apiserver", "--manifest", str(DATA / "apiserver-good.yaml"), "--root",
                               str(root), "--json"])
    assert good.exit_code == 0, good.output
    lines = [json.loads(x) for x in good.output.splitlines()]
    assert lines[-1]["summary"]["fail"] == 0 and lines[0]["benchmark_id"] == "1.2.16"
    assert runner.invoke(cli, ["check", "apiserver", "--eks-cluster-json", str(DATA / "eks-audit-off.json")]
                         ).exit_code == 1
    assert runner.invoke(cli, ["check", "apiserver", "--gke-cluster-json", str(DATA / "gke-cluster.json")]
                         ).exit_code == 0
    old = runner.invoke(cli, ["check", "apiserver", "--cmdline", "kube-apiserver", "--benchmark", "cis-1.5"])
    assert "[FAIL] 1.2.22" in old.output
    assert runner.invoke(cli, ["check", "apiserver"]).exit_code == 2
    assert runner.invoke(cli, ["check", "apiserver", "--manifest", "/nonexistent.yaml"]).exit_code == 2


SHELL_WRAPPED = """\
apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.33.1
    command: ["/bin/sh", "-c", "exec /usr/local/bin/kube-apiserver --audit-log-path=/var/log/a.log \\
--audit-log-maxage=30 --audit-log-maxbackup=10 --audit-log-maxsize=100 1>>/var/log/kube-apiserver.log 2>&1"]
"""
SIDECAR_FIRST = """\
apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  containers:
  - name: healthcheck
    image: registry.k8s.io/kops/kube-apiserver-healthcheck:1.28.0
    command: ["/kube-apiserver-healthcheck"]
    args: ["--ca-cert=/secrets/ca.crt"]
  - name: apiserver
    image: registry.k8s.io/kube-apiserver:v1.33.1
    command: ["/usr/local/bin/kube-apiserver"]
    args: ["--audit-log-path=/var/log/a.log", "--audit-log-maxage=30"]
"""


@pytest.mark.parametrize("manifest", [SHELL_WRAPPED, SIDECAR_FIRST])
def test_manifest_shell_wrapper_and_sidecar(tmp_path: Path, manifest: str) -> None:
    """GCE-style `sh -c "exec kube-apiserver …"` and a kops-style healthcheck sidecar listed first."""
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(manifest)
    cfg = api.from_manifest(str(path))
    assert cfg.flags["audit-log-path"] == "/var/log/a.log" and cfg.flags["audit-log-maxage"] == "30"
    assert "ca-cert" not in cfg.flags and not any(k.startswith("1>") or k == "2>&1" for k in cfg.flags)
