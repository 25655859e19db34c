"""Audit logs for the throughput benches: the demo cluster's traffic at one audit level.

    .venv/bin/python bench/audit_events.py OUT --level RequestResponse|Metadata [--events N] [--seed S]
                                           [--rate EVENTS_PER_SEC]

The requests are the demo scenario's (``kubetrail.demo``: controllers renewing leases, kubelets
patching node status, endpoint-slice and replica-set updates, watches, token and access reviews,
Prometheus scrapes, the attack), so users, verbs, resources and timing look like a kubeadm
cluster's. Only the bodies differ by level:

* ``Metadata``: every event at level Metadata, request and response bodies dropped (~1 KB each);
* ``RequestResponse``: every write carries its request object and every successful resource
  request its response object, shaped like what a v1.30 apiserver returns — ``metadata`` with
  ``uid``/``resourceVersion``/``managedFields``, a ``spec`` and a ``status`` per kind (Lease,
  Node with conditions and images, EndpointSlice, Pod, ReplicaSet, lists) — about 2.9 KB per event.
  Node and pod objects carry no addresses (the scenario does not model pod IPs), so the added
  bodies teach detection nothing the scenario's traffic would contradict.

Deterministic: the same arguments write the same bytes. Bodies the scenario already has (the
attack's Secrets, tokens, CSRs) are kept as they are.
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from kubetrail.demo.scenario import generate
from kubetrail.timefmt import parse_rfc3339_ns

LEVELS = ("RequestResponse", "Metadata")
WRITES = ("create", "update", "patch")
IMAGES = ["registry.k8s.io/kube-proxy:v1.30.2", "registry.k8s.io/coredns/coredns:v1.11.1",
          "registry.k8s.io/pause:3.9", "docker.io/calico/node:v3.27.3", "docker.io/calico/cni:v3.27.3",
          "quay.io/prometheus/node-exporter:v1.8.1", "ghcr.io/shop/web:2.14.0", "ghcr.io/shop/cart:1.9.3",
          "docker.io/library/redis:7.2.5", "docker.io/library/postgres:16.3"]


class Bodies:
    """Request/response objects for an objectRef, deterministic per (seed, event number)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"bench-bodies/{seed}")

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _managed(self, manager: str, t: str, fields: dict[str, Any], operation: str = "Update",
                 sub: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": "v1", "time": t,
                               "fieldsType": "FieldsV1", "fieldsV1": fields}
        if sub:
            out["subresource"] = sub
        return out

    def _meta(self, ref: dict[str, Any], t: str, manager: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
        md: dict[str, Any] = {"name": ref.get("name") or f"gen-{self.rng.randrange(1 << 20):05x}"}
        if ref.get("namespace"):
            md["namespace"] = ref["namespace"]
        md.update({"uid": self._uid(), "resourceVersion": str(self.rng.randrange(4_000_000, 9_000_000)),
                   "creationTimestamp": "2026-02-01T08:14:09Z"})
        md.update(extra)
        md["managedFields"] = [self._managed(manager, t, fields)]
        return md

    def lease(self, ref: dict[str, Any], t: str, holder: str) -> dict[str, Any]:
        return {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                "metadata": self._meta(ref, t, holder.split(":")[-1], {"f:spec": {
                    "f:acquireTime": {}, "f:holderIdentity": {}, "f:leaseDurationSeconds": {},
                    "f:leaseTransitions": {}, "f:renewTime": {}}}),
                "spec": {"holderIdentity": f"{ref.get('name', 'x')}_{self._uid()}", "leaseDurationSeconds": 40,
                         "acquireTime": "2026-03-14T06:01:12.000000Z", "renewTime": t.replace("Z", ".000000Z"),
                         "leaseTransitions": self.rng.randrange(1, 9)}}

    def node(self, ref: dict[str, Any], t: str, full: bool) -> dict[str, Any]:
        conds = [{"type": c, "status": "False" if c != "Ready" else "True", "lastHeartbeatTime": t,
                  "lastTransitionTime": "2026-03-01T07:00:00Z", "reason": r, "message": m}
                 for c, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                                 ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                                 ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                                 ("Ready", "KubeletReady", "kubelet is posting ready status"))]
        if not full:
            return {"status": {"$setElementOrder/conditions": [{"type": c["type"]} for c in conds],
                               "conditions": [{"lastHeartbeatTime": c["lastHeartbeatTime"], "type": c["type"]}
                                              for c in conds]}}
        name = ref.get("name", "node")
        return {"kind": "Node", "apiVersion": "v1",
                "metadata": self._meta(ref, t, "kubelet", {"f:status": {"f:conditions": {}}},
                                       labels={"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                                               "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m5.xlarge",
                                               "topology.kubernetes.io/zone": "eu-west-1a"},
                                       annotations={"node.alpha.kubernetes.io/ttl": "0",
                                                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"}),
                "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": f"aws:///eu-west-1a/i-{self.rng.getrandbits(60):015x}"},
                "status": {"capacity": {"cpu": "4", "memory": "16146916Ki", "pods": "110", "ephemeral-storage": "101430960Ki"},
                           "allocatable": {"cpu": "4", "memory": "16044516Ki", "pods": "110", "ephemeral-storage": "93478772582"},
                           "conditions": conds,
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                           "nodeInfo": {"machineID": self._uid().replace("-", ""), "systemUUID": self._uid(),
                                        "bootID": self._uid(), "kernelVersion": "6.1.0-21-cloud-amd64",
                                        "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.17",
                                        "kubeletVersion": "v1.30.2", "kubeProxyVersion": "v1.30.2",
                                        "operatingSystem": "linux", "architecture": "amd64"},
                           "images": [{"names": [f"{i}@sha256:{self.rng.getrandbits(256):064x}", i],
                                       "sizeBytes": self.rng.randrange(10**6, 10**8)} for i in IMAGES[:6]]}}

    def pod(self, ref: dict[str, Any], t: str, name: str = "") -> dict[str, Any]:
        image = self.rng.choice(IMAGES)
        app = (name or ref.get("name") or "web").split("-")[0]
        return {"kind": "Pod", "apiVersion": "v1",
                "metadata": self._meta({**ref, "name": name or ref.get("name")}, t, "kubelet",
                                       {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}}},
                                       labels={"app": app, "pod-template-hash": f"{self.rng.getrandbits(36):09x}"},
                                       ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                         "name": f"{app}-{self.rng.getrandbits(36):09x}",
                                                         "uid": self._uid(), "controller": True,
                                                         "blockOwnerDeletion": True}]),
                "spec": {"containers": [{"name": app, "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                         "terminationMessagePath": "/dev/termination-log",
                                         "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                         "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                         "serviceAccountName": "default", "nodeName": f"node-{self.rng.randrange(1, 4)}",
                         "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
                         "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"},
                "status": {"phase": "Running", "startTime": "2026-03-14T06:12:00Z",
                           "qosClass": "Burstable",
                           "conditions": [{"type": c, "status": "True", "lastProbeTime": None,
                                           "lastTransitionTime": "2026-03-14T06:12:04Z"}
                                          for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                           "containerStatuses": [{"name": app, "ready": True, "restartCount": 0, "image": image,
                                                  "imageID": f"{image}@sha256:{self.rng.getrandbits(256):064x}",
                                                  "containerID": f"containerd://{self.rng.getrandbits(256):064x}",
                                                  "started": True,
                                                  "state": {"running": {"startedAt": "2026-03-14T06:12:03Z"}}}]}}

    def endpointslice(self, ref: dict[str, Any], t: str) -> dict[str, Any]:
        return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                "metadata": self._meta(ref, t, "endpointslice-controller",
                                       {"f:addressType": {}, "f:endpoints": {}, "f:ports": {}},
                                       labels={"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                                               "kubernetes.io/service-name": (ref.get("name") or "svc").rsplit("-", 1)[0]}),
                "addressType": "IPv4",
                "endpoints": [{"addresses": [f"10.244.{n}.{self.rng.randrange(2, 250)}"],
                               "conditions": {"ready": True, "serving": True, "terminating": False},
                               "nodeName": f"node-{n}",
                               "targetRef": {"kind": "Pod", "namespace": ref.get("namespace", "default"),
                                             "name": f"web-{self.rng.getrandbits(20):05x}", "uid": self._uid()}}
                              for n in range(1, 4)],
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}

    def replicaset(self, ref: dict[str, Any], t: str) -> dict[str, Any]:
        n = self.rng.randrange(1, 5)
        return {"kind": "ReplicaSet", "apiVersion": "apps/v1",
                "metadata": self._meta(ref, t, "kube-controller-manager", {"f:status": {"f:replicas": {}}},
                                       labels={"app": (ref.get("name") or "web").split("-")[0]},
                                       annotations={"deployment.kubernetes.io/desired-replicas": str(n),
                                                    "deployment.kubernetes.io/max-replicas": str(n + 1),
                                                    "deployment.kubernetes.io/revision": "7"}),
                "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}}},
                "status": {"replicas": n, "fullyLabeledReplicas": n, "readyReplicas": n, "availableReplicas": n,
                           "observedGeneration": 7}}

    def generic(self, ref: dict[str, Any], t: str) -> dict[str, Any]:
        kind = ref.get("resource", "object").rstrip("s").capitalize()
        return {"kind": kind, "apiVersion": ref.get("apiVersion", "v1"),
                "metadata": self._meta(ref, t, "kube-controller-manager", {"f:spec": {}}),
                "spec": {"note": "generated", "generation": self.rng.randrange(1, 20)}}

    def bodies(self, ev: dict[str, Any]) -> tuple[Any, Any]:
        """(requestObject, responseObject) for a successful resource request."""
        ref = ev["objectRef"]
        res, verb, t = ref.get("resource", ""), ev["verb"], ev["stageTimestamp"][:19] + "Z"
        user = ev.get("user", {}).get("username", "")
        if verb in ("watch", "delete", "deletecollection"):
            return None, None
        if res == "leases":
            obj = self.lease(ref, t, user)
            return (obj if verb in WRITES else None), obj
        if res == "nodes":
            if verb == "patch":
                return self.node(ref, t, full=False), self.node(ref, t, full=True)
            return None, self.node(ref, t, full=True)
        if res == "endpointslices":
            obj = self.endpointslice(ref, t)
            return (obj if verb in WRITES else None), obj
        if res == "replicasets":
            obj = self.replicaset(ref, t)
            return (obj if verb in WRITES else None), obj
        if res == "pods" and verb == "list":
            items = [self.pod({**ref, "name": ""}, t, name=f"web-{self.rng.getrandbits(20):05x}") for _ in range(2)]
            return None, {"kind": "PodList", "apiVersion": "v1",
                          "metadata": {"resourceVersion": str(self.rng.randrange(4_000_000, 9_000_000))},
                          "items": items}
        if res == "pods" and not ref.get("subresource"):
            obj = self.pod(ref, t)
            return (obj if verb in WRITES else None), obj
        obj = self.generic(ref, t)
        return (obj if verb in WRITES else None), obj


def events(level: str, n: int, seed: int = 20260314, rate: float | None = None) -> Iterator[dict[str, Any]]:
    """At least ``n`` events of the demo scenario at ``level`` (see the module docstring); with ``rate``,
    that many per second of event time (``_squeezer``)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    scenario = generate(seed=seed, events=n)
    squeeze = _squeezer(scenario.events, rate) if rate else None
    bodies = Bodies(seed)
    for ev in scenario.events:
        ev = dict(ev, level=level)
        if level == "Metadata":
            ev.pop("requestObject", None)
            ev.pop("responseObject", None)
        elif ("objectRef" in ev and ev["stage"] == "ResponseComplete"
              and ev.get("responseStatus", {}).get("code", 500) < 300):
            req, resp = bodies.bodies(ev)
            if req is not None and "requestObject" not in ev:
                ev["requestObject"] = req
            if resp is not None and "responseObject" not in ev:
                ev["responseObject"] = resp
        if squeeze is not None:  # after the bodies, which are made from the scenario's own times
            squeeze(ev)
        yield ev


TIMES = ("requestReceivedTimestamp", "stageTimestamp")


def _squeezer(evs: list[dict[str, Any]], rate: float) -> Callable[[dict[str, Any]], None]:
    """What moves an event's two timestamps closer to the first event's (never apart) so that the log holds
    ``rate`` events per second of event time: the scenario spreads any number of events over its two
    hours (100,000 events: ~14 per second, a small cluster), while a busy apiserver logs hundreds to
    thousands per second, and the consumers' reorder buffers (``allowed_lateness_secs``, 300 s) then
    hold far more records than their memory budget keeps (the rest is read back from the store when
    released: a cost the sparse log never shows). Order and every other byte are kept. The span is read
    from the scenario's events, before any body is added: a log of millions is still written event by event."""
    start = min(parse_rfc3339_ns(e[TIMES[0]]) or 0 for e in evs)
    end = max(parse_rfc3339_ns(e[TIMES[1]]) or 0 for e in evs)
    factor = min(1.0, len(evs) / rate / max((end - start) / 1e9, 1e-9))

    def squeeze(ev: dict[str, Any]) -> None:
        for field in TIMES:
            ns = parse_rfc3339_ns(ev.get(field))
            if ns is not None:
                ev[field] = _micro_time(start + int((ns - start) * factor))

    return squeeze


def _micro_time(ns: int) -> str:
    """As the apiserver writes its times (``metav1.MicroTime``: six fraction digits, UTC)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac // 1000:06d}Z"


def write(path: str, level: str, n: int, seed: int = 20260314, rate: float | None = None) -> tuple[int, int]:
    """Write the log (``rate``: events per second of event time, see ``_squeezer``); returns (events, bytes)."""
    count = size = 0
    with open(path, "wb") as fh:
        for ev in events(level, n, seed, rate):
            line = orjson.dumps(ev) + b"\n"
            fh.write(line)
            count += 1
            size += len(line)
    return count, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--level", choices=LEVELS, default="RequestResponse")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20260314)
    ap.add_argument("--rate", type=float, help="events per second of event time (default: the scenario's "
                                               "two hours, whatever the number of events)")
    a = ap.parse_args()
    count, size = write(a.out, a.level, a.events, a.seed, a.rate)
    print(f"wrote {count:,} events, {size / count:,.0f} bytes/event, to {a.out}")



if __name__ == "__main__":
    main()
