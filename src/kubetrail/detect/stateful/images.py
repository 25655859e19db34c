"""First-seen container images (catalog D23) and static (mirror) pods (catalog D27).

**New image.** Every pod and workload template written (Pod, Deployment, DaemonSet, StatefulSet,
ReplicaSet, ReplicationController, Job, CronJob, PodTemplate; the pod's ephemeral containers) adds
its container images to one cluster-wide baseline. An image *repository* not seen before raises an
alert after the learning period (``learning_secs`` of event time after the detector's first record).
The repository, not the full reference, is the baseline key: a new tag of a known image is a routine
upgrade and would make every release an alert; a new registry or repository is what an attacker's
image (a miner, a tool image) looks like. The images are read from the request object (create,
update, and patches that name containers) and the response object, so the detector needs the
``Request`` level or higher for these resources; at ``Metadata`` it has nothing to read and stays quiet.

**Static pods.** The kubelet creates a *mirror pod* (annotation ``kubernetes.io/config.mirror``)
for each static pod manifest on its node; NodeRestriction allows a node identity to create no other
pods, so at ``Metadata`` level a pod created by ``system:node:*`` is taken to be a mirror pod too.
The mirror pod's name is the manifest's name plus ``-<node>``; the detector strips the node suffix,
so the same control-plane pods on a new node stay quiet, while a new static pod name or image
repository on any node raises an alert after the learning period. Mirror pods' images also join the
new-image baseline (without an alert from that detector: the static-pod alert covers them).
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import as_dict, done_ok, learning, make_alert, objects
from kubetrail.detect.stateful.state import StateStore

TEMPLATE_WORKLOADS = frozenset({"deployments", "daemonsets", "statefulsets", "replicasets",
                                "replicationcontrollers", "jobs", "podtemplates"})
WRITES = frozenset({"create", "update", "patch"})
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def pod_spec(obj: dict[str, Any], resource: str) -> dict[str, Any]:
    """The pod spec inside an object of this resource ({} when it has none)."""
    if resource == "pods":
        return as_dict(obj.get("spec"))
    if resource == "cronjobs":
        job = as_dict(as_dict(obj.get("spec")).get("jobTemplate"))
        return as_dict(as_dict(as_dict(job.get("spec")).get("template")).get("spec"))
    if resource == "podtemplates":
        return as_dict(as_dict(obj.get("template")).get("spec"))
    return as_dict(as_dict(as_dict(obj.get("spec")).get("template")).get("spec"))


def images(record: Any) -> list[str]:
    """Container images named in the record's request/response objects, in order, without repeats."""
    out: list[str] = []
    for obj in objects(record):
        spec = pod_spec(obj, record.meta.resource)
        for kind in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(kind) or []:
                image = as_dict(c).get("image")
                if isinstance(image, str) and image.strip() and image not in out:
                    out.append(image.strip())
    return out


def repository(image: str) -> str:
    """``nginx:1.27`` -> ``docker.io/library/nginx``; digest and tag removed, Docker Hub made explicit."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    parts = name.split("/")
    if len(parts) == 1:
        parts = ["docker.io", "library", *parts]
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *parts]
    return "/".join(parts).lower()


def _writes_workload(record: Any) -> bool:
    m = record.meta
    if m.verb not in WRITES or not done_ok(record):
        return False
    if m.resource == "pods":
        return m.subresource in ("", "ephemeralcontainers")
    return (m.resource in TEMPLATE_WORKLOADS or m.resource == "cronjobs") and not m.subresource


class NewImage:
    """A workload or pod with a container image repository the cluster has not run before (D23)."""

    name = "images"
    # dispatch: observe ignores the rest (_writes_workload)
    verbs, resources = WRITES, TEMPLATE_WORKLOADS | {"pods", "cronjobs"}
    rule = "K8s Workload With New Container Image"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.learning_ns = int(config.learning_secs * 1e9)
        self.allow = tuple(config.image_allow)

    def observe(self, record: Any) -> list[Alert]:
        if not _writes_workload(record):
            return []
        found = images(record)
        if not found:
            return []
        m = record.meta
        quiet = learning(self.state, self.name, record.time, self.learning_ns) or m.user.startswith("system:node:")
        new: list[str] = []
        for image in found:
            repo = repository(image)
            if self.state.get(self.name, repo) is None:
                self.state.put(self.name, repo, {"first": image, "t": record.time, "by": m.user})
                if not quiet and not (repo.startswith(self.allow) or image.startswith(self.allow)):
                    new.append(image)
        if not new:
            return []
        where = f"{m.resource} {m.namespace}/{m.name}" if m.namespace else f"{m.resource} {m.name}"
        return [make_alert(self.rule, "Warning", record, m.user or "unknown",
                           f"{m.user} {m.verb} {where} with container image(s) never seen in this cluster: "
                           f"{', '.join(new)}", ["k8s", "T1610", "T1204.003"], dedup=",".join(new),
                           fields={"images": new, "resource": m.resource, "namespace": m.namespace,
                                   "name": m.name})]


class MirrorPod:
    """A static (mirror) pod with a name or image repository not seen before on any node (D27)."""

    name = "mirror_pods"
    verbs, resources = frozenset({"create"}), frozenset({"pods"})  # dispatch: observe ignores the rest
    rule = "K8s New Static Pod Created by Node"
    rules = ((rule, "Warning"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.learning_ns = int(config.learning_secs * 1e9)

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if (m.resource != "pods" or m.verb != "create" or m.subresource or not m.user.startswith("system:node:")
                or not done_ok(record)):
            return []
        objs = objects(record)
        if objs and not any(MIRROR_ANNOTATION in as_dict(as_dict(o.get("metadata")).get("annotations"))
                            for o in objs):
            return []  # the request object is there and it is no mirror pod (NodeRestriction would deny it)
        node = m.user.removeprefix("system:node:")
        base = m.name.removesuffix(f"-{node}") if m.name.endswith(f"-{node}") else m.name
        quiet = learning(self.state, self.name, record.time, self.learning_ns)
        new: list[str] = []
        keys = [("name", f"{m.namespace}/{base}")] if base else []
        keys += [("image", repository(i)) for i in images(record)]
        for kind, value in keys:
            key = f"{kind}\x1f{value}"
            if self.state.get(self.name, key) is None:
                self.state.put(self.name, key, {"t": record.time, "node": node})
                if not quiet:
                    new.append(f"{kind} {value}")
        if not new:
            return []
        return [make_alert(self.rule, "Warning", record, m.user,
                           f"node {node} created static (mirror) pod {m.namespace}/{m.name} with a new "
                           f"{'; new '.join(new)}", ["k8s", "T1543.005", "T1610"],
                           dedup=f"{m.namespace}/{m.name}:{','.join(new)}",
                           fields={"node": node, "pod": f"{m.namespace}/{m.name}", "new": new})]
