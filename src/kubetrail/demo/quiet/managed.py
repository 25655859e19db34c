"""The managed platforms' own identities at work (EKS, GKE, AKS), beside the Kubernetes machinery.

Each reconciles what it owns, as it does in the audit logs these platforms deliver: EKS's add-on
manager re-applies the CoreDNS ConfigMap and the ``aws-node`` DaemonSet (labelled
``eks.amazonaws.com/component``), ``eks:node-manager`` reads ``aws-auth``, ``eks:k8s-metrics`` lists;
GKE's ``system:addon-manager`` (kubectl apply) re-applies add-ons labelled
``addonmanager.kubernetes.io/mode`` and ``system:clustermetrics`` lists nodes; AKS's ``aksService``
re-applies its add-on ConfigMaps, ``hcpService`` reads, and a new node bootstraps with ``nodeclient``.
Their control planes connect from addresses the cluster does not otherwise see.
"""

from __future__ import annotations

from typing import Any

from kubetrail.demo import objects as o
from kubetrail.demo.model import Identity, ref
from kubetrail.demo.pki import b64, make_csr, private_key
from kubetrail.demo.quiet.cast import Actor
from kubetrail.demo.quiet.traffic import Traffic, every

# user -> (groups, user agent). The user names are the platforms' (corpus reference §2.1, Falco's
# eks_allowed_k8s_users); their user agents are not documented, so these are placeholders and no
# profile in detect/rules/01-machinery.yaml relies on them.
IDENTITIES = {
    "eks:addon-manager": (["system:authenticated"], "eks-addon-manager/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "eks:node-manager": (["system:authenticated"], "eks-node-manager/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "eks:k8s-metrics": (["system:authenticated"], "eks-k8s-metrics/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "eks:certificate-controller": (["system:authenticated"], "eks-certificate-controller/v0.0.0"),
    "system:addon-manager": (["system:authenticated"], "kubectl/v1.30.5 (linux/amd64) kubernetes/74e84a9"),
    "system:clustermetrics": (["system:authenticated"], "clustermetrics/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "system:gcp-controller-manager": (["system:authenticated"], "gcp-controller-manager/v0.0.0 (linux/amd64)"),
    "aksService": (["system:authenticated"], "aks-rp/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "hcpService": (["system:authenticated"], "hcp/v0.0.0 (linux/amd64) kubernetes/$Format"),
    "nodeclient": (["system:bootstrappers", "system:authenticated"], "kubelet/v1.31.7 (linux/amd64) kubernetes/5f2c1e9"),
}


def identity(name: str, ip: str) -> Identity:
    groups, ua = IDENTITIES[name]
    return Identity(name, list(groups), ip, ua)


class ManagedTraffic(Traffic):
    def run(self) -> None:
        platform = self.p.platform
        if platform == "eks":
            self.eks()
        elif platform == "gke":
            self.gke()
        elif platform == "aks":
            self.aks()

    def actor(self, name: str) -> Actor:
        return Actor(self.c.managed(name))

    def _addon_configmap(self, t: float, who: Actor, name: str, labels: dict[str, str], verb: str = "patch") -> None:
        body = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": o.meta(name, "kube-system", labels=labels),
                "data": {"Corefile": ".:53 {\n    errors\n    health\n    kubernetes cluster.local\n    forward . "
                                     "/etc/resolv.conf\n    cache 30\n}\n"}}
        self.req(t, who, verb, ref("configmaps", "kube-system", name), req=body)

    def _addon_daemonset(self, t: float, who: Actor, name: str, labels: dict[str, str]) -> None:
        container = o.container(name, f"602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.18.{2}",
                                securityContext={"privileged": True})
        body = {"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": o.meta(name, "kube-system", labels=labels),
                "spec": {"template": {"metadata": {"labels": labels},
                                      "spec": {"hostNetwork": True, "containers": [container],
                                               "serviceAccountName": name}}}}
        self.req(t, who, "patch", ref("daemonsets", "kube-system", name, group="apps"), req=body)

    def eks(self) -> None:
        addon, ip = self.actor("eks:addon-manager"), self.c.cp_ip
        for t in every(self.log, 900):
            self._addon_configmap(t, addon, "coredns", {"eks.amazonaws.com/component": "coredns",
                                                        "k8s-app": "kube-dns"})
            self._addon_daemonset(t + 2, addon, "aws-node", {"app.kubernetes.io/name": "aws-node",
                                                             "eks.amazonaws.com/component": "aws-node"})
        for t in every(self.log, 300):
            self.req(t, self.actor("eks:node-manager"), "get", ref("configmaps", "kube-system", "aws-auth"))
            self.req(t + 1, self.actor("eks:k8s-metrics"), "list", ref("pods"), query="limit=500")
        del ip

    def gke(self) -> None:
        addon = self.actor("system:addon-manager")
        labels = {"addonmanager.kubernetes.io/mode": "Reconcile", "k8s-app": "kube-dns"}
        for t in every(self.log, 600):
            self._addon_configmap(t, addon, "kube-dns-autoscaler", labels)
            body = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                    "metadata": o.meta("system:kube-dns-autoscaler", labels=labels),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "system:kube-dns-autoscaler"},
                    "subjects": [{"kind": "ServiceAccount", "name": "kube-dns-autoscaler", "namespace": "kube-system"}]}
            self.req(t + 1, addon, "patch", ref("clusterrolebindings", name="system:kube-dns-autoscaler",
                                                group="rbac.authorization.k8s.io"), req=body)
        for t in every(self.log, 300):
            self.req(t, self.actor("system:clustermetrics"), "list", ref("nodes"))

    def aks(self) -> None:
        rp = self.actor("aksService")
        for t in every(self.log, 900):
            self._addon_configmap(t, rp, "coredns-custom", {"addonmanager.kubernetes.io/mode": "EnsureExists",
                                                            "k8s-app": "kube-dns"})
        for t in every(self.log, 300):
            self.req(t, self.actor("hcpService"), "get", ref("nodes"))
        self.aks_node_join(self.log.end * 0.3)

    def aks_node_join(self, t: float) -> None:
        """A scale-out: the new node's bootstrap identity asks for its kubelet client certificate."""
        boot = self.actor("nodeclient")
        name = "aks-nodepool1-31415926-vmss000003"
        pem = make_csr(private_key(self.rng), f"system:node:{name}", ["system:nodes"])
        signer, usages = "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]
        body: dict[str, Any] = o.csr(o.meta(generate_name="csr-"), b64(pem), signer, usages)
        self.req(t, boot, "create", ref("certificatesigningrequests", group="certificates.k8s.io"), req=body,
                 code=201)
