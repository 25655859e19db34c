"""What a quiet cluster looks like in the audit log, per Kubernetes version and per platform.

A ``Profile`` is one (version, platform) pair and the facts that change what the apiserver writes:

* **Tokens.** Before 1.22 every pod and every kube-controller-manager controller authenticates with
  the never-expiring token of an auto-created ``kubernetes.io/service-account-token`` Secret;
  ``legacy_annotation`` (1.22+, and upgraded clusters) marks each such request with
  ``authentication.k8s.io/legacy-token``. From 1.22 pods use bound tokens the kubelet requests
  (TokenRequest, bound to the pod), and from 1.24 kube-controller-manager mints its controllers'
  tokens with TokenRequests too (``LegacyServiceAccountTokenNoAutoGeneration``).
* **Credential ids** (audit-policy reference §5.2, §0.12): ``JTI=`` on bound-token requests and the
  ``issued-credential-id`` annotation on TokenRequests from 1.30; ``X509SHA256=`` on certificate
  requests from 1.32.
* **kubeadm's admin.conf**: ``kubernetes-admin`` in ``system:masters`` until 1.29, then in
  ``kubeadm:cluster-admins`` (a ClusterRoleBinding to cluster-admin).
* **Platforms.** kubeadm runs the control plane on a node of the cluster; EKS, GKE and AKS run it
  out of sight and add their own identities: EKS nodes authenticate through AWS IAM
  (``aws-iam-authenticator`` extra keys), ``eks:certificate-controller`` approves kubelet serving
  certificates, ``eks:addon-manager`` reconciles managed add-ons; GKE's
  ``system:gcp-controller-manager`` approves node certificates and ``system:addon-manager``
  reconciles add-ons labelled ``addonmanager.kubernetes.io/mode``; AKS's ``aksService`` does the
  same for its add-ons, nodes bootstrap with ``nodeclient`` and people sign in through Entra ID
  (object ids as user names), and ``masterclient`` is the cluster-admin certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

PLATFORMS = ("kubeadm", "eks", "gke", "aks")


@dataclass(frozen=True)
class Profile:
    version: str  # "1.20", "1.23", "1.24", "1.29", "1.32" …
    platform: str = "kubeadm"

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    @property
    def name(self) -> str:
        return f"{self.platform}-{self.version}"

    @property
    def git_version(self) -> str:
        patch = {"eks": "-eks-a1b2c3d", "gke": "-gke.1200000", "aks": ""}.get(self.platform, "")
        return f"v{self.version}.7{patch}"

    @property
    def pods_use_legacy_tokens(self) -> bool:
        return self.minor < 22

    @property
    def controllers_use_legacy_tokens(self) -> bool:
        return self.minor < 24

    @property
    def legacy_annotation(self) -> bool:
        """1.20 had none; a 1.23 apiserver (or an upgraded cluster) writes it on every legacy-token use."""
        return self.minor >= 22

    @property
    def jti(self) -> bool:
        return self.minor >= 30

    @property
    def x509_ids(self) -> bool:
        return self.minor >= 32

    @property
    def admin_groups(self) -> list[str]:
        return ["kubeadm:cluster-admins" if self.minor >= 29 else "system:masters", "system:authenticated"]

    @property
    def apiserver_identity_leases(self) -> bool:
        return self.minor >= 26

    @property
    def control_plane_visible_ip(self) -> bool:
        """kubeadm's components connect from the control-plane node; managed ones from hidden addresses."""
        return self.platform == "kubeadm"


# The corpora the regression test runs (and scripts/make_benign_corpus.py writes by default).
CORPORA = (Profile("1.20"), Profile("1.23"), Profile("1.24"), Profile("1.28"), Profile("1.32"),
           Profile("1.29", "eks"), Profile("1.30", "gke"), Profile("1.31", "aks"))


def parse(name: str) -> Profile:
    """``kubeadm-1.24`` (or ``1.24``) -> Profile; a clear error for anything else."""
    platform, _, version = name.rpartition("-")
    platform = platform or "kubeadm"
    parts = version.split(".")
    if platform not in PLATFORMS or len(parts) != 2 or parts[0] != "1" or not parts[1].isdigit() \
            or not 18 <= int(parts[1]) <= 35:
        raise ValueError(f"unknown corpus {name!r}: PLATFORM-1.MINOR with PLATFORM one of {', '.join(PLATFORMS)} "
                         "and MINOR 18..35, e.g. kubeadm-1.20 or eks-1.29")
    return Profile(version, platform)
