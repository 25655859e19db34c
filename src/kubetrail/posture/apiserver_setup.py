"""Write the kube-apiserver audit configuration that ``posture.apiserver`` checks pass: the flags,
the hostPath volumes they need, a kubeadm static-pod manifest (patched from an existing one when
given) and the matching kubeadm ``ClusterConfiguration`` fragment.

Why a generator next to the checker: "turn audit logging on" is four files that must agree (policy
path, webhook kubeconfig path, the mounts that make both visible inside the static pod, and the log
directory on the host). Writing them from one table (``FLAGS``, ``VOLUMES``) and checking the result
with ``check_apiserver`` is how ``kubetrail deploy apiserver`` stays honest; the tests feed its output
straight back into ``kubetrail check apiserver`` and ``kubetrail policy lint``.
"""

from __future__ import annotations

import copy
import posixpath
from dataclasses import dataclass
from typing import Any

import yaml

from kubetrail.errors import InputError
from kubetrail.posture.apiserver import _SHELLS, apiserver_container, parse_flags

AUDIT_DIR = "/etc/kubernetes/audit"  # policy + webhook kubeconfig, mounted read-only
LOG_DIR = "/var/log/kubernetes/audit"  # the log backend's directory, on the host
POLICY_PATH = f"{AUDIT_DIR}/audit-policy.yaml"
WEBHOOK_CONFIG_PATH = f"{AUDIT_DIR}/audit-webhook.yaml"
LOG_PATH = f"{LOG_DIR}/audit.log"
PKI_DIR = "/etc/kubernetes/pki"
DEFAULT_KUBERNETES_VERSION = "v1.36.0"


def audit_flags(webhook: bool) -> dict[str, str]:
    """The audit flags, without ``--``. Values follow CIS 1.2.x (maxage 30, maxbackup 10, maxsize
    100) and keep the log backend in the default ``blocking`` mode (``batch`` drops events when its
    buffer fills); the webhook runs in ``batch`` mode so a slow receiver never stalls requests."""
    flags = {
        "audit-policy-file": POLICY_PATH,
        "audit-log-path": LOG_PATH,
        "audit-log-format": "json",
        "audit-log-maxage": "30",
        "audit-log-maxbackup": "10",
        "audit-log-maxsize": "100",
        "audit-log-mode": "blocking",
    }
    if webhook:
        flags |= {"audit-webhook-config-file": WEBHOOK_CONFIG_PATH, "audit-webhook-mode": "batch"}
    return flags


@dataclass(frozen=True)
class Volume:
    name: str
    host_path: str
    mount_path: str
    read_only: bool
    kind: str = "DirectoryOrCreate"

    def volume(self) -> dict[str, Any]:
        return {"name": self.name, "hostPath": {"path": self.host_path, "type": self.kind}}

    def mount(self) -> dict[str, Any]:
        return {"name": self.name, "mountPath": self.mount_path, "readOnly": self.read_only}


VOLUMES = (
    Volume("kubetrail-audit-config", AUDIT_DIR, AUDIT_DIR, True),
    Volume("kubetrail-audit-log", LOG_DIR, LOG_DIR, False),
)


def _covered(path: str, mounts: list[dict[str, Any]], hostpaths: dict[str, str | None]) -> bool:
    """Whether ``path`` is already on a hostPath mount (a manifest that mounts /var/log needs no more)."""
    for m in mounts:
        mp = str(m.get("mountPath") or "").rstrip("/") or "/"
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and hostpaths.get(m.get("name")):
            return True
    return False


def _without(argv: list[str], flags: dict[str, str]) -> list[str]:
    """``argv`` without any of ``flags`` (both the ``--f=v`` and the ``--f v`` spelling)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        name = tok[2:].partition("=")[0] if tok.startswith("--") else None
        if name in flags:
            if "=" not in tok and i < len(argv) and not argv[i].startswith("-"):
                i += 1  # the "--f v" spelling: drop the old value too
            continue
        out.append(tok)
    return out


def patch_manifest(doc: dict[str, Any], flags: dict[str, str], origin: str) -> dict[str, Any]:
    """A copy of a kube-apiserver static-pod manifest with ``flags`` set and ``VOLUMES`` mounted."""
    out = copy.deepcopy(doc)
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else None
    c = apiserver_container(spec) if spec else None
    if spec is None or c is None:
        raise InputError(f"{origin}: no kube-apiserver container found")
    command = [str(x) for x in c.get("command") or []]
    if command and posixpath.basename(command[0]) in _SHELLS:
        wanted = " ".join(f"--{k}={v}" for k, v in flags.items())
        raise InputError(f"{origin}: kube-apiserver runs inside a shell wrapper ({command[0]} -c …), which "
                         f"kubetrail does not rewrite; add these flags by hand: {wanted}")
    # the apiserver's argv is command + args: drop our flags from both, append them where the
    # manifest keeps its flags (args when it has any, as in manifests with command: [kube-apiserver])
    args = [str(x) for x in c.get("args") or []]
    wanted = [f"--{k}={v}" for k, v in flags.items()]
    if command:
        c["command"] = _without(command, flags)
    if args or not command:
        c["args"] = _without(args, flags) + wanted
    else:
        c["command"] += wanted
    volumes = spec.setdefault("volumes", [])
    mounts = c.setdefault("volumeMounts", [])
    hostpaths = {v.get("name"): (v.get("hostPath") or {}).get("path") for v in volumes if isinstance(v, dict)}
    for vol in VOLUMES:
        if _covered(vol.mount_path, mounts, hostpaths):
            continue
        if vol.name in hostpaths:
            raise InputError(f"{origin}: a volume named {vol.name!r} exists but is not mounted at {vol.mount_path}")
        volumes.append(vol.volume())
        mounts.append(vol.mount())
    return out


def kubeadm_manifest(version: str, advertise_address: str) -> dict[str, Any]:
    """A kube-apiserver static pod as ``kubeadm init`` writes it (default paths and flags), for a
    control plane built by hand or as the base that ``patch_manifest`` extends."""
    pki = PKI_DIR
    flags = {
        "advertise-address": advertise_address,
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": f"{pki}/ca.crt",
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "etcd-cafile": f"{pki}/etcd/ca.crt",
        "etcd-certfile": f"{pki}/apiserver-etcd-client.crt",
        "etcd-keyfile": f"{pki}/apiserver-etcd-client.key",
        "etcd-servers": "https://127.0.0.1:2379",
        "kubelet-client-certificate": f"{pki}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{pki}/apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": f"{pki}/front-proxy-client.crt",
        "proxy-client-key-file": f"{pki}/front-proxy-client.key",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": f"{pki}/front-proxy-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "secure-port": "6443",
        "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
        "service-account-key-file": f"{pki}/sa.pub",
        "service-account-signing-key-file": f"{pki}/sa.key",
        "service-cluster-ip-range": "10.96.0.0/12",
        "tls-cert-file": f"{pki}/apiserver.crt",
        "tls-private-key-file": f"{pki}/apiserver.key",
    }

    def probe(path: str, **extra: int) -> dict[str, Any]:
        return {"httpGet": {"host": advertise_address, "path": path, "port": 6443, "scheme": "HTTPS"},
                "periodSeconds": 10, "timeoutSeconds": 15, "failureThreshold": 8, **extra}

    host_dirs = [("ca-certs", "/etc/ssl/certs"), ("etc-ca-certificates", "/etc/ca-certificates"),
                 ("k8s-certs", pki), ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates"),
                 ("usr-share-ca-certificates", "/usr/share/ca-certificates")]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver", "namespace": "kube-system",
                     "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                     "annotations": {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint":
                                     f"{advertise_address}:6443"}},
        "spec": {
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "kube-apiserver",
                "image": f"registry.k8s.io/kube-apiserver:{version}",
                "imagePullPolicy": "IfNotPresent",
                "command": ["kube-apiserver", *(f"--{k}={v}" for k, v in flags.items())],
                "livenessProbe": probe("/livez", initialDelaySeconds=10),
                "readinessProbe": probe("/readyz", periodSeconds=1),
                "startupProbe": probe("/livez", initialDelaySeconds=10, failureThreshold=24),
                "resources": {"requests": {"cpu": "250m"}},
                "volumeMounts": [{"name": n, "mountPath": p, "readOnly": True} for n, p in host_dirs],
            }],
            "volumes": [{"name": n, "hostPath": {"path": p, "type": "DirectoryOrCreate"}} for n, p in host_dirs],
        },
    }


def kubeadm_config(flags: dict[str, str], version: str) -> dict[str, Any]:
    """The same flags and volumes as a kubeadm ``ClusterConfiguration`` (v1beta4: extraArgs is a
    name/value list), for ``kubeadm init --config`` or ``kubeadm upgrade``: kubeadm rewrites the
    static-pod manifest from it, so a hand-patched manifest would be lost at the next upgrade."""
    return {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": version,
        "apiServer": {
            "extraArgs": [{"name": k, "value": v} for k, v in flags.items()],
            "extraVolumes": [{"name": v.name, "hostPath": v.host_path, "mountPath": v.mount_path,
                              "readOnly": v.read_only, "pathType": v.kind} for v in VOLUMES],
        },
    }


def load_manifest(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    pods = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Pod"]
    if len(pods) != 1:
        raise InputError(f"{path}: expected one Pod (a static-pod manifest), found {len(pods)}")
    return pods[0]


def version_of(manifest: dict[str, Any]) -> str | None:
    """The apiserver image's tag (``v1.33.2``), for the kubeadm fragment."""
    spec = manifest.get("spec") or {}
    c = apiserver_container(spec) if isinstance(spec, dict) else None
    image = str((c or {}).get("image") or "")
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    return tag or None


def flags_of(manifest: dict[str, Any]) -> dict[str, str]:
    c = apiserver_container(manifest.get("spec") or {}) or {}
    return parse_flags([str(x) for x in (c.get("command") or []) + (c.get("args") or [])])
