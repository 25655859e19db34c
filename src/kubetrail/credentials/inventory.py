"""Creation events → credentials: CSRs (create, approval, issuance, deletion), TokenRequests, legacy
token and bootstrap-token Secrets, and cluster-admin bindings (for the service-account flag).

Event shapes, levels and versions are in the audit-policy reference §5. The rules that matter here:

* Only a request's final stage counts (``ResponseComplete``, or no stage for lossy formats), and
  only when it succeeded: a CSR the admission plugin refused never became a credential.
* The requester of an impersonated request is the impersonated user (that is whom the apiserver
  records in ``spec.username``); the impersonator is kept beside it.
* A dry run (``?dryRun=All``) persisted and issued nothing: it is no creation, approval or deletion
  (it is still a use of the credential that sent it, which ``link.py`` records).
* Whatever the audit level hid is written down as a policy gap on the credential, never guessed
  silently; where we do infer (an unnamed CSR matched to its approval by time) the step says
  ``probable``.
"""

from __future__ import annotations

from typing import Any

from kubetrail.credentials.csr import csr_at, csr_created, csr_decided, csr_status
from kubetrail.credentials.events import as_dict, dry_run, final
from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import Credential, step_of
from kubetrail.credentials.tokens import secret_created, token_requested

# Every branch of ``handle`` is about one of these resources; the rest of the traffic (leases, nodes'
# status, endpoints, reads) is only a use of a credential, so it is dismissed before the dry-run check.
RESOURCES = frozenset({"certificatesigningrequests", "serviceaccounts", "secrets", "pods", "nodes",
                       "clusterrolebindings", "rolebindings"})
# Of those, the ones whose branches act on some verbs only (the others: any verb). Kubelets read and
# update their pods and nodes all day; only a deletion revokes the tokens bound to one.
VERBS = {"pods": frozenset({"delete"}), "nodes": frozenset({"delete"}),
         "secrets": frozenset({"create", "delete"}), "serviceaccounts": frozenset({"create", "delete"})}


def handle(ledger: Ledger, record: Any) -> None:
    """Apply one record's creation-side meaning, if it has one."""
    m = record.meta
    if m.resource not in RESOURCES or m.verb not in VERBS.get(m.resource, (m.verb,)) or dry_run(m):
        return
    if m.resource == "certificatesigningrequests" and m.api_group == "certificates.k8s.io":
        if not final(m):
            return
        if m.verb == "create" and not m.subresource:
            csr_created(ledger, record)
        elif m.subresource == "approval" and m.verb in ("update", "patch"):
            csr_decided(ledger, record)
        elif m.subresource == "status" and m.verb in ("update", "patch"):
            csr_status(ledger, record)
        elif m.verb == "delete" and m.name:
            c = csr_at(ledger, m.name, record.time)
            if c is not None:
                c.chain.append(step_of(record, "csr-deleted"))
                ledger.put(c)
    elif m.resource == "serviceaccounts" and m.subresource == "token" and m.verb == "create" and not m.api_group:
        if final(m):
            token_requested(ledger, record)
    elif m.resource == "secrets" and not m.api_group and not m.subresource and final(m):
        if m.verb == "create":
            secret_created(ledger, record)
        elif m.verb == "delete" and m.name:
            revoke(ledger, ledger.by_lookup(f"secret:{m.namespace}/{m.name}"), record, "secret-deleted")
    elif m.verb == "delete" and m.name and not m.api_group and not m.subresource and final(m) and \
            m.resource in ("pods", "nodes", "serviceaccounts"):
        if m.resource == "serviceaccounts":
            found = [c for c in ledger.by_subject(f"system:serviceaccount:{m.namespace}:{m.name}")
                     if c.kind in ("token", "legacy")]
        else:
            found = ledger.by_lookup(f"pod:{m.namespace}/{m.name}" if m.resource == "pods" else f"node:{m.name}")
        revoke(ledger, found, record, f"{'service-account' if m.resource == 'serviceaccounts' else 'bound-object'}"
                                      "-deleted")
    elif (m.api_group == "rbac.authorization.k8s.io" and m.resource in ("clusterrolebindings", "rolebindings")
          and final(m) and m.name):
        binding_changed(ledger, record)


def revoke(ledger: Ledger, creds: list[Credential], record: Any, action: str) -> None:
    """Credentials that stop working when an object is deleted: a token's bound Pod/Secret/Node, its
    service account, a legacy or bootstrap token's Secret. Only those created before the deletion
    (a new pod with the same name gets new tokens). A Pod lingers for its grace period; the time
    recorded is the deletion request's. Client certificates are never revoked (nothing can)."""
    for c in creds:
        if c.revoked_at is None and (c.created_at is None or c.created_at <= record.time):
            c.revoked_at, c.status = record.time, "revoked"
            c.chain.append(step_of(record, action, object=f"{record.meta.resource}/{record.meta.namespace}"
                                                          f"{'/' if record.meta.namespace else ''}{record.meta.name}"))
            ledger.put(c)


def binding_changed(ledger: Ledger, record: Any) -> None:
    m = record.meta
    binding = (f"ClusterRoleBinding/{m.name}" if m.resource == "clusterrolebindings"
               else f"RoleBinding/{m.namespace}/{m.name}")
    if m.verb == "delete":
        ledger.set_binding(binding, [], record)
        return
    ev = record.event()
    obj = as_dict(ev.get("responseObject")) or as_dict(ev.get("requestObject"))
    role = as_dict(obj.get("roleRef"))
    if not role:
        return  # Metadata level, or a patch that does not show the roleRef
    subjects: list[str] = []
    if role.get("kind") == "ClusterRole" and role.get("name") == "cluster-admin":
        for s in obj.get("subjects") or []:
            s = as_dict(s)
            kind, name = s.get("kind"), str(s.get("name", ""))
            if kind == "ServiceAccount":
                subjects.append(f"sa:{s.get('namespace') or m.namespace}/{name}")
            elif kind == "User" and name.startswith("system:serviceaccount:") and name.count(":") == 3:
                _, _, sns, sname = name.split(":")
                subjects.append(f"sa:{sns}/{sname}")
            elif kind == "Group" and name.startswith("system:serviceaccounts"):
                subjects.append(f"group:{name}")
    ledger.set_binding(binding, subjects, record)
    for subj in subjects:
        prefix = ("system:serviceaccount:" + subj[3:].replace("/", ":") if subj.startswith("sa:")
                  else "system:serviceaccount:" + subj[len("group:system:serviceaccounts:"):])
        for c in ledger.subjects_like(prefix):
            if c.kind in ("token", "legacy"):
                ledger.touch(c.id)
