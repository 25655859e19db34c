"""TokenRequest for a service account with powerful bindings (catalog D62, the inventory part).

The rule *Risky Service Account Token Requested* covers the parts of D62 one event shows
(kube-system, long-lived, unbound). This detector adds the cross-event part: it follows the RBAC
objects the trail shows and raises an alert when a non-system identity mints a token
(``serviceaccounts/token`` create) for a service account that a binding in the trail ties to a
powerful role. The machinery is recognised by what it does (``mints_as_machinery``), not by a
``system:`` name.

Powerful roles: ``cluster-admin``, ``admin``, ``edit`` and
``system:controller:clusterrole-aggregation-controller``, plus every Role/ClusterRole the trail shows
(at ``Request`` level or higher) whose rules have wildcard verbs and resources, the verbs
``escalate``/``bind``/``impersonate``, read access to secrets, ``serviceaccounts/token`` create,
``pods/exec`` or ``nodes/proxy``. Bindings are read from RoleBinding/ClusterRoleBinding writes
(``roleRef`` and ``subjects`` from the request or response object; a delete removes one); subjects
are service accounts (by kind, or as a ``system:serviceaccount:`` user) and the
``system:serviceaccounts[:NS]`` groups. A binding written before this detector first ran (an upgrade
of an existing store) is still found through the credential inventory's cluster-admin bindings
(``kubetrail.credentials.ledger.Ledger.admin_bindings``). Bindings outside the trail (created
before auditing began, or logged at ``Metadata`` only) are unknown: the alert then does not fire.
"""

from __future__ import annotations

from typing import Any

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import as_dict, done_ok, ev_row, evidence, make_alert, objects
from kubetrail.detect.stateful.machinery import CONTROLLERS
from kubetrail.detect.stateful.state import StateStore

BUILTIN_POWERFUL = {"cluster-admin": "cluster-admin", "admin": "admin (namespace admin)",
                    "edit": "edit (writes workloads, reads secrets)",
                    "system:controller:clusterrole-aggregation-controller": "escalate on every ClusterRole"}
WRITES = frozenset({"create", "update", "patch"})


def rule_power(rules: Any) -> str:
    """Why a role's rules are powerful, or ''."""
    for r in rules if isinstance(rules, list) else []:
        r = as_dict(r)
        verbs = {str(v) for v in r.get("verbs") or []}
        res = {str(v) for v in r.get("resources") or []}
        if "*" in verbs and "*" in res:
            return "wildcard verbs on all resources"
        if verbs & {"escalate", "bind", "impersonate"}:
            return "verbs " + "/".join(sorted(verbs & {"escalate", "bind", "impersonate"}))
        if res & {"secrets", "*"} and verbs & {"get", "list", "watch", "*"}:
            return "reads secrets"
        if res & {"serviceaccounts/token", "pods/exec", "nodes/proxy"} and verbs & {"create", "get", "*"}:
            return "on " + "/".join(sorted(res & {"serviceaccounts/token", "pods/exec", "nodes/proxy"}))
    return ""


def binding_subjects(obj: dict[str, Any], namespace: str) -> list[str]:
    out: list[str] = []
    for s in obj.get("subjects") or []:
        s = as_dict(s)
        kind, name = s.get("kind"), str(s.get("name", ""))
        if kind == "ServiceAccount" and name:
            out.append(f"sa:{s.get('namespace') or namespace}/{name}")
        elif kind == "User" and name.startswith("system:serviceaccount:") and name.count(":") == 3:
            out.append("sa:" + "/".join(name.split(":")[2:]))
        elif kind == "Group" and (name == "system:serviceaccounts" or name.startswith("system:serviceaccounts:")):
            out.append(f"group:{name}")
    return out


def mints_as_machinery(record: Any) -> bool:
    """Token minting that is the cluster's machinery by what it does: a kubelet (with the kubelet's
    user agent) minting its pods' tokens, kube-controller-manager minting its controllers' tokens in
    kube-system. A kube-system service account minting a token is no longer exempt by its name."""
    m = record.meta
    if m.user.startswith("system:node:") and "system:nodes" in m.groups and m.user_agent.startswith("kubelet/"):
        return True
    return (m.user == "system:kube-controller-manager" and m.user_agent.startswith("kube-controller-manager/")
            and m.namespace == "kube-system" and m.name in CONTROLLERS)


class PrivilegedTokenRequest:
    name = "privileged_sa"
    verbs, resources = None, frozenset({"roles", "clusterroles", "rolebindings", "clusterrolebindings",
                                        "serviceaccounts"})  # dispatch: observe ignores the rest
    rule = "K8s Token Requested for Privileged Service Account"
    rules = ((rule, "Critical"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state

    def observe(self, record: Any) -> list[Alert]:
        m = record.meta
        if not done_ok(record):
            return []
        if m.resource in ("roles", "clusterroles") and not m.subresource and m.name:
            self._role(record)
        elif m.resource in ("rolebindings", "clusterrolebindings") and not m.subresource and m.name:
            self._binding(record)
        elif (m.resource == "serviceaccounts" and m.subresource == "token" and m.verb == "create" and m.name
              and m.user and not mints_as_machinery(record)):
            return self._token(record)
        return []

    def _role(self, record: Any) -> None:
        m = record.meta
        ref = f"ClusterRole/{m.name}" if m.resource == "clusterroles" else f"Role/{m.namespace}/{m.name}"
        if m.verb == "delete":
            self.state.put(self.name, "role\x1f" + ref, None)
            return
        objs = [o for o in objects(record) if "rules" in o]
        if m.verb in WRITES and objs:
            why = rule_power(objs[-1].get("rules"))
            self.state.put(self.name, "role\x1f" + ref, {"why": why} if why else None)

    def _binding(self, record: Any) -> None:
        m = record.meta
        bid = f"ClusterRoleBinding/{m.name}" if m.resource == "clusterrolebindings" \
            else f"RoleBinding/{m.namespace}/{m.name}"
        old = self.state.get(self.name, "binding\x1f" + bid)
        if m.verb == "delete":
            self.state.put(self.name, "binding\x1f" + bid, None)
            return
        objs = [o for o in objects(record) if as_dict(o.get("roleRef"))]
        if m.verb not in WRITES or not objs:
            return  # Metadata level, or a patch that does not show the roleRef: keep what is known
        obj = objs[-1]
        role = as_dict(obj.get("roleRef"))
        ref = (f"ClusterRole/{role.get('name')}" if role.get("kind") == "ClusterRole"
               else f"Role/{m.namespace}/{role.get('name')}")
        subjects = binding_subjects(obj, m.namespace)
        self.state.put(self.name, "binding\x1f" + bid, {"role": ref, "subjects": subjects, "ev": ev_row(record)})
        for s in set(subjects) | set(old["subjects"] if old else []):
            ids = list(self.state.get(self.name, "subject\x1f" + s, []))
            if s in subjects and bid not in ids:
                ids.append(bid)
            elif s not in subjects and bid in ids:
                ids.remove(bid)
            self.state.put(self.name, "subject\x1f" + s, ids or None)

    def _power(self, ref: str) -> str:
        if ref.startswith("ClusterRole/") and ref[12:] in BUILTIN_POWERFUL:
            return BUILTIN_POWERFUL[ref[12:]]
        doc = self.state.get(self.name, "role\x1f" + ref)
        return doc["why"] if doc else ""

    def _token(self, record: Any) -> list[Alert]:
        m = record.meta
        ns, sa = m.namespace, m.name
        subjects = [f"sa:{ns}/{sa}", "group:system:serviceaccounts", f"group:system:serviceaccounts:{ns}"]
        found: list[tuple[str, str, list[Any]]] = []  # binding, why, evidence row
        for s in subjects:
            for bid in self.state.get(self.name, "subject\x1f" + s, []):
                b = self.state.get(self.name, "binding\x1f" + bid)
                if not b or (bid.startswith("RoleBinding/") and bid.split("/")[1] != ns):
                    continue
                why = self._power(b["role"])
                if why and b["ev"][0] <= record.time and all(f[0] != bid for f in found):
                    found.append((bid, f"{b['role']}: {why}", b["ev"]))
        if not found:
            found = self._from_inventory(subjects, record.time)
        if not found:
            return []
        critical = any("cluster-admin" in f[1] or "wildcard" in f[1] for f in found)
        bound = "; ".join(f"{b} -> {why}" for b, why, _ in found[:3])
        return [make_alert(self.rule, "Critical" if critical else "Warning", record, m.user,
                           f"{m.user} requested a token for service account {ns}/{sa}, which the trail shows "
                           f"bound to a powerful role ({bound})", ["k8s", "T1528", "T1078.004"],
                           dedup=f"{ns}/{sa}:{m.audit_id or record.key}",
                           evidence=evidence([f[2] for f in found] + [ev_row(record)]),
                           fields={"service_account": f"{ns}/{sa}", "bindings": [f[0] for f in found]})]

    def _from_inventory(self, subjects: list[str], t: int) -> list[tuple[str, str, list[Any]]]:
        """Cluster-admin bindings the credential inventory recorded (for bindings older than this detector)."""
        if self.state.store is None:
            return []
        from kubetrail.credentials.ledger import Ledger  # the inventory's public lookup; read only

        try:
            rows = Ledger(self.state.store.credentials).admin_bindings(subjects)
        except Exception:  # noqa: BLE001 - no credentials tables (detection without the inventory)
            return []
        return [(r[0], "ClusterRole/cluster-admin: cluster-admin", [r[5], r[2], r[3], "", r[4]])
                for r in rows if r[5] <= t][:3]
