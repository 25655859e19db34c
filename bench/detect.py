"""Detection throughput: events/s with no rules, with built-in + upstream Falco rules, and with 4x the rules.

Usage: .venv/bin/python bench/detect.py [--events N] [--seed S] [--input traces|benign|both]

Two inputs, each evaluated with rule matching ``all``:

* ``traces``: the Falco k8s_audit trace files (public fixtures) repeated to N: nearly all attacks.
* ``benign``: a seeded synthetic cluster day (``benign_mix``): mostly get/list/watch/update by
  controllers, kubelets and kube-system service accounts, some user traffic, about 1% attacks.

The 4x ruleset is the same files loaded with every rule copied three more times under new names,
which shows what the (verb, resource) index saves: a rule is only tested on events it could match.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import re
import sys
import tempfile
import time
from typing import Any

from kubetrail.detect.engine import builtin_rule_paths, load_rules
from kubetrail.sources.files import read_paths
from kubetrail.testing import fixtures_dir, make_event

CONTROLLERS = ["system:kube-controller-manager", "system:kube-scheduler",
               "system:serviceaccount:kube-system:replicaset-controller",
               "system:serviceaccount:kube-system:endpointslice-controller",
               "system:serviceaccount:kube-system:deployment-controller",
               "system:serviceaccount:kube-system:generic-garbage-collector"]
KUBE_SYSTEM_SAS = ["system:serviceaccount:kube-system:coredns", "system:serviceaccount:kube-system:kube-proxy",
                   "system:serviceaccount:kube-system:metrics-server", "system:serviceaccount:kube-system:cilium"]
APP_SAS = ["system:serviceaccount:monitoring:prometheus", "system:serviceaccount:cert-manager:cert-manager",
           "system:serviceaccount:argocd:argocd-application-controller", "system:serviceaccount:shop:web"]
USERS = ["alice@example.com", "bob@example.com", "ci-deployer"]
NAMESPACES = ["default", "shop", "monitoring", "kube-system", "argocd", "cert-manager"]
READ_RESOURCES = ["pods", "services", "endpoints", "configmaps", "deployments", "replicasets", "nodes",
                  "leases", "events", "secrets", "endpointslices", "namespaces"]


def _pod(image: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"containers": [{"name": "c", "image": image}], **spec}}


def _attack(rnd: random.Random, i: int, t: str) -> dict[str, Any]:
    ip = f"203.0.113.{rnd.randint(1, 254)}"
    kind = rnd.randrange(6)
    if kind == 0:
        return make_event(f"a{i}", verb="create", resource="pods", subresource="exec", name="web-1",
                          namespace="shop", time=t, user="alice@example.com", source_ips=[ip],
                          requestURI="/api/v1/namespaces/shop/pods/web-1/exec?command=sh&stdin=true")
    if kind == 1:
        return make_event(f"a{i}", verb="list", resource="secrets", namespace="", time=t,
                          user="system:serviceaccount:shop:web", source_ips=[ip], userAgent="curl/8.5.0")
    if kind == 2:
        return make_event(f"a{i}", verb="create", resource="clusterrolebindings", namespace="", name="pwn",
                          api_group="rbac.authorization.k8s.io", time=t, user="bob@example.com", level="Request",
                          requestObject={"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                                         "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]})
    if kind == 3:
        return make_event(f"a{i}", verb="create", resource="pods", name="p", namespace="shop", time=t,
                          user="bob@example.com", level="Request",
                          requestObject=_pod("xmrig/xmrig", hostPID=True, hostNetwork=True))
    if kind == 4:
        return make_event(f"a{i}", verb="get", resource="pods", namespace="", time=t, user="system:anonymous",
                          groups=["system:unauthenticated"], source_ips=[ip])
    return make_event(f"a{i}", verb="create", resource="serviceaccounts", subresource="token", name="default",
                      namespace="kube-system", time=t, user="alice@example.com", source_ips=[ip])


def benign_mix(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """A seeded, realistic-looking event mix: 45% controllers, 25% kubelets, 12% kube-system SAs,
    8% other SAs, 9% users, 1% attacks (exec, cluster-wide secret listing, cluster-admin binding,
    privileged miner pod, anonymous listing, TokenRequest for kube-system)."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t = f"2025-01-01T{i // 36000 % 24:02d}:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10}00000Z"
        ns = rnd.choice(NAMESPACES)
        res = rnd.choice(READ_RESOURCES)
        roll = rnd.random()
        ip = f"10.0.{rnd.randint(0, 3)}.{rnd.randint(2, 250)}"
        if roll < 0.45:
            verb = rnd.choices(["get", "list", "watch", "update", "patch"], [30, 15, 25, 20, 10])[0]
            ev = make_event(f"e{i}", verb=verb, resource=res, namespace=ns, name="" if verb in ("list", "watch")
                            else f"obj-{rnd.randint(1, 50)}", time=t, user=rnd.choice(CONTROLLERS),
                            groups=["system:authenticated"], source_ips=["192.168.1.2"],
                            userAgent="kube-controller-manager/v1.30.1 (linux/amd64) kubernetes/6911225")
        elif roll < 0.70:
            node = f"system:node:n{rnd.randint(1, 12)}"
            verb, res2, sub = rnd.choice([("get", "pods", ""), ("watch", "configmaps", ""), ("get", "secrets", ""),
                                          ("patch", "pods", "status"), ("update", "leases", ""),
                                          ("patch", "nodes", "status"), ("list", "services", "")])
            ev = make_event(f"e{i}", verb=verb, resource=res2, subresource=sub, namespace=ns, name=f"o{i % 97}",
                            time=t, user=node, groups=["system:nodes", "system:authenticated"],
                            source_ips=[f"192.168.1.{10 + int(node.rsplit('n', 1)[1])}"],
                            userAgent="kubelet/v1.30.1 (linux/amd64) kubernetes/6911225")
        elif roll < 0.82:
            ev = make_event(f"e{i}", verb=rnd.choice(["get", "list", "watch"]), resource=res, namespace=ns, time=t,
                            user=rnd.choice(KUBE_SYSTEM_SAS), groups=["system:serviceaccounts"], source_ips=[ip],
                            userAgent="coredns/1.11.1")
        elif roll < 0.90:
            verb = rnd.choice(["get", "list", "watch", "update", "create"])
            r = res if verb in ("get", "list", "watch") else rnd.choice(["configmaps", "events", "leases"])
            ev = make_event(f"e{i}", verb=verb, resource=r, namespace=ns, time=t, user=rnd.choice(APP_SAS),
                            groups=["system:serviceaccounts"], source_ips=[ip], userAgent="Go-http-client/2.0")
        elif roll < 0.99:
            verb = rnd.choices(["get", "list", "create", "patch", "delete"], [40, 40, 8, 8, 4])[0]
            r = rnd.choice(["pods", "deployments", "services", "configmaps", "pods"])
            body = {"requestObject": _pod("nginx:1.27")} if verb == "create" and r == "pods" else {}
            ev = make_event(f"e{i}", verb=verb, resource=r, namespace=rnd.choice(["default", "shop"]), time=t,
                            user=rnd.choice(USERS), source_ips=[f"10.8.0.{rnd.randint(2, 20)}"],
                            userAgent="kubectl/v1.30.1 (linux/amd64) kubernetes/6911225", **body)
        else:
            ev = _attack(rnd, i, t)
        ev.setdefault("annotations", {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""})
        out.append(ev)
    return out


def _multiplied(paths: list[str], copies: int, out_dir: str) -> list[str]:
    """The rule files plus ``copies`` extra copies of every rule, renamed (lists/macros stay once)."""
    out = list(paths)
    for i in range(copies):
        for p in paths:
            with open(p, encoding="utf-8") as fh:
                text = fh.read()
            text = re.sub(r"^- (list|macro): .*?(?=^- |\Z)", "", text, flags=re.S | re.M)
            text = re.sub(r"^- required_\w+:.*?(?=^- |\Z)", "", text, flags=re.S | re.M)
            text = re.sub(r"^- rule: (.*)$", lambda m, i=i: f"- rule: {m.group(1).strip()} copy{i}", text, flags=re.M)
            dst = os.path.join(out_dir, f"copy{i}-{os.path.basename(p)}")
            with open(dst, "w", encoding="utf-8") as fh:
                fh.write(text)
            out.append(dst)
    return out


def _rate(paths: list[str] | None, events: list[dict], repeat: int = 3) -> tuple[float, int, int]:
    if not paths:
        best = min(_timed(lambda: [None for _ in events]) for _ in range(repeat))
        return len(events) / best, 0, 0
    rs = load_rules(paths, match="all")
    best = min(_timed(lambda: [rs.evaluate(e) for e in events]) for _ in range(repeat))
    matches = sum(len(rs.evaluate(e)) for e in events)
    return len(events) / best, len(rs.rules), matches


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _report(label: str, events: list[dict[str, Any]], rules: list[str], four: list[str]) -> None:
    none_rate, _, _ = _rate(None, events)
    one_rate, n1, m1 = _rate(rules, events)
    four_rate, n4, m4 = _rate(four, events)
    print(f"events: {len(events)} ({label}), python {sys.version.split()[0]}")
    print(f"  no rules:                        {none_rate:12,.0f} events/s (loop overhead only)")
    print(f"  built-in + upstream ({n1} rules): {one_rate:10,.0f} events/s, {m1} matches")
    print(f"  4x rules ({n4} rules):            {four_rate:10,.0f} events/s, {m4} matches")
    print(f"  time per event, 4x vs 1x rules: {one_rate / four_rate:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--input", choices=["traces", "benign", "both"], default="both")
    args = ap.parse_args()
    fx = fixtures_dir() / "falco"
    upstream = [str(fx / "rules" / "k8s_audit_rules.yaml")]
    rules = builtin_rule_paths() + upstream
    with tempfile.TemporaryDirectory() as tmp:
        four = _multiplied(rules, 3, tmp)
        if args.input in ("traces", "both"):
            traces = sorted(glob.glob(str(fx / "trace_files" / "k8s_audit" / "*")))
            base = [d.event for d in read_paths(traces) if hasattr(d, "event")]
            events = (base * (args.events // len(base) + 1))[: args.events]
            _report("Falco trace files repeated", events, rules, four)
        if args.input in ("benign", "both"):
            _report(f"benign mix, seed {args.seed}", benign_mix(args.events, args.seed), rules, four)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
