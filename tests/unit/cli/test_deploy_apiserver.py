"""`kubetrail deploy apiserver` writes what `check apiserver` and `policy lint` accept: its output
is fed straight back into both commands, on a fresh manifest and on patched real-world ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.posture import apiserver_setup as setup

DATA = Path(__file__).parents[2] / "data" / "posture"


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def node_root(out: Path, tmp: Path) -> Path:
    """The files placed where the printed instructions say, under a fake node root."""
    root = tmp / "node"
    (root / setup.AUDIT_DIR.lstrip("/")).mkdir(parents=True)
    shutil.copy(out / "audit-policy.yaml", root / setup.POLICY_PATH.lstrip("/"))
    shutil.copy(out / "audit-webhook.yaml", root / setup.WEBHOOK_CONFIG_PATH.lstrip("/"))
    return root


def checks(manifest: Path, root: Path | None = None, code: int = 0) -> dict[str, str]:
    args = ["check", "apiserver", "--manifest", str(manifest), "--json"] + (["--root", str(root)] if root else [])
    rows = [json.loads(line) for line in run(*args, code=code).splitlines()]
    return {r["id"]: r["status"] for r in rows if "id" in r}


@pytest.mark.parametrize("profile", ["minimal", "recommended", "forensic"])
def test_fresh_output_passes_check_and_lint(tmp_path: Path, profile: str) -> None:
    out = tmp_path / "out"
    run("deploy", "apiserver", "--profile", profile, "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["audit-policy.yaml", "audit-webhook.yaml",
                                                     "kube-apiserver.yaml", "kubeadm-config.yaml"]
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o600"}
    status = checks(out / "kube-apiserver.yaml", node_root(out, tmp_path))
    assert set(status.values()) == {"PASS"}, status
    assert {"audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize", "audit-policy-file",
            "audit-policy-coverage", "audit-log-format", "audit-webhook-mode"} <= status.keys()
    run("policy", "lint", str(out / "audit-policy.yaml"), "--fail-on", "warn")
    # without the node's disk only the policy's content is unknown: WARN, never FAIL
    assert checks(out / "kube-apiserver.yaml")["audit-policy-coverage"] == "WARN"


def test_kubeadm_fragment_passes_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("deploy", "apiserver", "--out", str(out), "--kubernetes-version", "v1.35.1")
    cfg = yaml.safe_load((out / "kubeadm-config.yaml").read_text())
    assert cfg["kubernetesVersion"] == "v1.35.1"
    rows = run("check", "apiserver", "--kubeadm-config", str(out / "kubeadm-config.yaml"), "--root",
               str(node_root(out, tmp_path)), "--json")
    assert {json.loads(r).get("status") for r in rows.splitlines()} == {"PASS", None}
    pod = yaml.safe_load((out / "kube-apiserver.yaml").read_text())
    assert pod["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-apiserver:v1.35.1"


def test_webhook_kubeconfig_points_at_the_receiver_without_secrets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("deploy", "apiserver", "--out", str(out), "--webhook-server", "https://192.0.2.7:8443/")
    doc = yaml.safe_load((out / "audit-webhook.yaml").read_text())
    assert doc["clusters"][0]["cluster"] == {"server": "https://192.0.2.7:8443/",
                                             "certificate-authority": "/etc/kubernetes/pki/kubetrail-webhook-ca.crt"}
    assert doc["users"][0]["user"] == {"client-certificate": "/etc/kubernetes/pki/audit-webhook-client.crt",
                                       "client-key": "/etc/kubernetes/pki/audit-webhook-client.key"}
    text = "".join(p.read_text() for p in out.iterdir() if p.name != "audit-policy.yaml")
    assert "PRIVATE KEY" not in text and "-data:" not in text and "token:" not in text


def test_no_webhook_is_log_backend_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("deploy", "apiserver", "--out", str(out), "--no-webhook")
    assert not (out / "audit-webhook.yaml").exists()
    status = checks(out / "kube-apiserver.yaml")
    assert "audit-webhook-mode" not in status and "FAIL" not in status.values()


def test_patching_a_bad_manifest_fixes_every_fail(tmp_path: Path) -> None:
    """apiserver-bad.yaml fails three checks and warns on seven; patched, none fails, only the
    operator's truncation choice still warns, and the unrelated parts stay."""
    before = checks(DATA / "apiserver-bad.yaml", code=1)
    assert list(before.values()).count("FAIL") == 3 and list(before.values()).count("WARN") == 7
    out = tmp_path / "out"
    run("deploy", "apiserver", "--manifest", str(DATA / "apiserver-bad.yaml"), "--out", str(out))
    after = checks(out / "kube-apiserver.yaml", node_root(out, tmp_path))
    # the operator's own choice (truncation) is reported, not silently changed
    assert {k: v for k, v in after.items() if v != "PASS"} == {"audit-log-truncate": "WARN"}, after
    pod = yaml.safe_load((out / "kube-apiserver.yaml").read_text())
    [c] = pod["spec"]["containers"]
    assert c["command"] == ["kube-apiserver"] and "--audit-log-truncate-enabled" in c["args"]
    assert sum(a.startswith("--audit-log-maxage") for a in c["args"]) == 1
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/log"] == "logs" and mounts[setup.LOG_DIR] == "kubetrail-audit-log"


def test_patch_is_idempotent_and_keeps_existing_hostpath_mounts(tmp_path: Path) -> None:
    """The good manifest already mounts its own policy and log directories: patching twice gives the
    same file, adds no duplicate flag, and replaces the space-separated spelling of a flag."""
    doc = yaml.safe_load((DATA / "apiserver-good.yaml").read_text())
    c = doc["spec"]["containers"][0]
    key = "command" if any(str(x).startswith("--") for x in c.get("command") or []) else "args"
    c[key] = [x for x in c[key] if not str(x).startswith("--audit-log-maxage")] + ["--audit-log-maxage", "3"]
    src = tmp_path / "in.yaml"
    src.write_text(yaml.safe_dump(doc))
    once, twice = tmp_path / "once", tmp_path / "twice"
    run("deploy", "apiserver", "--manifest", str(src), "--out", str(once))
    run("deploy", "apiserver", "--manifest", str(once / "kube-apiserver.yaml"), "--out", str(twice))
    first = yaml.safe_load((once / "kube-apiserver.yaml").read_text())
    assert first == yaml.safe_load((twice / "kube-apiserver.yaml").read_text())
    argv = [str(x) for x in first["spec"]["containers"][0][key]]
    assert "3" not in argv and argv.count("--audit-log-maxage=30") == 1
    names = [v["name"] for v in first["spec"]["volumes"]]
    assert len(names) == len(set(names))
    assert "FAIL" not in checks(once / "kube-apiserver.yaml").values()


def test_refusals_are_one_line(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
        {"name": "kube-apiserver", "command": ["/bin/sh", "-c", "exec /usr/local/bin/kube-apiserver --v=2"]}]}}))
    result = CliRunner().invoke(cli, ["deploy", "apiserver", "--manifest", str(wrapped), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "shell wrapper" in result.output and "--audit-policy-file=" in result.output
    assert not (tmp_path / "o").exists()
    notpod = tmp_path / "deploy.yaml"
    notpod.write_text("kind: Deployment\n")
    result = CliRunner().invoke(cli, ["deploy", "apiserver", "--manifest", str(notpod), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "expected one Pod" in result.output
