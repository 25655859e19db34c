"""``kubetrail deploy apiserver``: the files that turn audit logging on for a kubeadm control plane.

One command writes the policy (``policy generate``), the webhook kubeconfig (``webhook-config``'s
builder) and the static-pod manifest with the flags and mounts that ``check apiserver`` wants, so
the output of one command passes the other (tested).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import yaml

from kubetrail.cli.webhook import kubeconfig
from kubetrail.errors import InputError
from kubetrail.posture import apiserver_setup as setup
from kubetrail.posture.policy.generate import DEFAULT_PROFILE, PROFILES, generate

DEFAULT_WEBHOOK_SERVER = "https://10.96.0.50:8443/"  # the kubetrail-webhook Service's pinned ClusterIP


def _write(path: Path, text: str, mode: int) -> None:
    """Write atomically: a half-written manifest in /etc/kubernetes/manifests would be picked up by the
    kubelet as it is."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _dump(doc: object, header: str) -> str:
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


@click.group("deploy")
def deploy() -> None:
    """Write deployment files (see docs/deploy.md)."""


@deploy.command("apiserver")
@click.option("--profile", type=click.Choice(PROFILES), default=DEFAULT_PROFILE, show_default=True,
              help="Audit policy profile (as `policy generate`).")
@click.option("--manifest", "existing", type=click.Path(dir_okay=False),
              help="Existing kube-apiserver.yaml to patch (default: write a kubeadm-style one).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--webhook-server", default=DEFAULT_WEBHOOK_SERVER, show_default=True,
              help="URL of kubetrail's audit webhook receiver as the apiserver reaches it.")
@click.option("--webhook-ca", default=f"{setup.PKI_DIR}/kubetrail-webhook-ca.crt", show_default=True,
              help="CA of the receiver's serving certificate (path on the control-plane node).")
@click.option("--webhook-client-cert", default=f"{setup.PKI_DIR}/audit-webhook-client.crt", show_default=True,
              help="Client certificate the apiserver presents to the receiver (path on the node).")
@click.option("--webhook-client-key", default=f"{setup.PKI_DIR}/audit-webhook-client.key", show_default=True,
              help="Its key (path on the node; never read).")
@click.option("--no-webhook", is_flag=True, help="Log backend only (the node agent reads the file).")
@click.option("--kubernetes-version", default=None,
              help=f"For a new manifest and the kubeadm fragment (default: the manifest's image tag, else "
                   f"{setup.DEFAULT_KUBERNETES_VERSION}).")
@click.option("--advertise-address", default="10.0.0.10", show_default=True,
              help="For a new manifest only: the node's address.")
def apiserver_cmd(profile: str, existing: str | None, out_dir: str, webhook_server: str, webhook_ca: str,
                  webhook_client_cert: str, webhook_client_key: str, no_webhook: bool,
                  kubernetes_version: str | None, advertise_address: str) -> None:
    """Write audit-policy.yaml, audit-webhook.yaml, kube-apiserver.yaml and kubeadm-config.yaml into --out."""
    flags = setup.audit_flags(webhook=not no_webhook)
    hook = None if no_webhook else kubeconfig(webhook_server, webhook_ca, webhook_client_cert, webhook_client_key)
    if existing:
        base = setup.load_manifest(existing)
        version = kubernetes_version or setup.version_of(base) or setup.DEFAULT_KUBERNETES_VERSION
        origin = f"patched from {existing}"
    else:
        version = kubernetes_version or setup.DEFAULT_KUBERNETES_VERSION
        base = setup.kubeadm_manifest(version, advertise_address)
        origin = "kubeadm defaults"
    manifest = setup.patch_manifest(base, flags, existing or "kube-apiserver.yaml")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write(out / "audit-policy.yaml", generate(profile), 0o600)
        if hook is not None:
            _write(out / "audit-webhook.yaml", _dump(hook, "# kube-apiserver --audit-webhook-config-file="
                                                           f"{setup.WEBHOOK_CONFIG_PATH}\n"), 0o600)
        _write(out / "kube-apiserver.yaml", _dump(manifest, f"# kubetrail deploy apiserver ({origin}): "
                                                             "goes to /etc/kubernetes/manifests/\n"), 0o600)
        _write(out / "kubeadm-config.yaml", _dump(setup.kubeadm_config(flags, version),
                                                  "# the same flags for kubeadm (merge into your "
                                                  "ClusterConfiguration)\n"), 0o600)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {out}/: audit-policy.yaml -> {setup.POLICY_PATH}"
               + ("" if hook is None else f", audit-webhook.yaml -> {setup.WEBHOOK_CONFIG_PATH}")
               + ", kube-apiserver.yaml -> /etc/kubernetes/manifests/, kubeadm-config.yaml (kubeadm users)")
    click.echo(f"check: kubetrail check apiserver --manifest {out}/kube-apiserver.yaml")


commands: list[click.Command] = [deploy]
