"""Audit logging on managed control planes, judged from the provider's describe output.

The apiserver flags are not visible there; what is visible is whether the provider exports the
audit log: EKS ``logging.clusterLogging[].types`` containing ``audit``, AKS diagnostic settings
with the ``kube-audit`` or ``kube-audit-admin`` category, GKE Cloud Audit Logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetrail.errors import InputError
from kubetrail.posture.apiserver import Check


def load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read JSON: {exc}") from exc


def check_eks(doc: Any) -> list[Check]:
    """``aws eks describe-cluster --name NAME --output json`` (with or without the ``cluster`` wrapper)."""
    cluster = doc.get("cluster", doc) if isinstance(doc, dict) else {}
    entries = ((cluster.get("logging") or {}).get("clusterLogging")) or []
    if not isinstance(entries, list):
        raise InputError("EKS JSON: logging.clusterLogging is not a list")
    enabled = {t for e in entries if isinstance(e, dict) and e.get("enabled") for t in e.get("types") or []}
    name = cluster.get("name", "CLUSTER")
    fix = (f"aws eks update-cluster-config --name {name} --logging "
           "'{\"clusterLogging\":[{\"types\":[\"audit\",\"authenticator\"],\"enabled\":true}]}'")
    cis = {"eks-1.8.0": "2.1.1"}
    out = [Check("eks-audit-log", "PASS" if "audit" in enabled else "FAIL", "Enable audit Logs",
                 "control-plane log type 'audit' is " + ("enabled" if "audit" in enabled else "not enabled"),
                 fix, cis)]
    out.append(Check("eks-authenticator-log", "PASS" if "authenticator" in enabled else "WARN",
                     "Authenticator logs map IAM principals to Kubernetes users",
                     "'authenticator' is " + ("enabled" if "authenticator" in enabled else
                                              "not enabled: audit events name a mapped user, not the IAM role"),
                     fix))
    out.append(Check("eks-log-retention", "INFO", "Ensure audit logs are collected and managed",
                     f"CloudWatch log group /aws/eks/{name}/cluster: retention is not in describe-cluster",
                     f"aws logs put-retention-policy --log-group-name /aws/eks/{name}/cluster "
                     "--retention-in-days 365", {"eks-1.8.0": "2.1.2"}))
    return out


def _settings(doc: Any) -> list[dict[str, Any]]:
    items = doc.get("value", [doc]) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InputError("AKS JSON: expected a list of diagnostic settings")
    return [s for s in items if isinstance(s, dict)]


def check_aks(doc: Any) -> list[Check]:
    """``az monitor diagnostic-settings list --resource AKS_ID`` (a list, or ``{"value": [...]}``)."""
    full, admin, grouped = [], [], []
    for s in _settings(doc):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else s
        dest = any(props.get(k) for k in ("workspaceId", "storageAccountId", "eventHubAuthorizationRuleId",
                                          "marketplacePartnerId"))
        for log in props.get("logs") or []:
            if not (dest and isinstance(log, dict) and log.get("enabled")):
                continue
            cat, group = log.get("category"), log.get("categoryGroup")
            if cat == "kube-audit" or group == "allLogs":
                full.append(s.get("name", "?"))
            elif cat == "kube-audit-admin":
                admin.append(s.get("name", "?"))
            elif group == "audit":
                grouped.append(s.get("name", "?"))
    fix = ("az monitor diagnostic-settings create --name kube-audit --resource AKS_ID --workspace WORKSPACE_ID "
           "--logs '[{\"category\":\"kube-audit\",\"enabled\":true}]'")
    cis = {"aks": "2.1.1"}
    if full:
        return [Check("aks-audit-log", "PASS", "Enable audit Logs", f"kube-audit exported by {', '.join(full)}",
                      fix, cis)]
    if admin:
        return [Check("aks-audit-log", "PASS", "Enable audit Logs",
                      f"kube-audit-admin exported by {', '.join(admin)}", fix, cis),
                Check("aks-audit-reads", "WARN", "Reads are audited",
                      "kube-audit-admin leaves out get and list: Secret reads are not recorded", fix)]
    if grouped:
        return [Check("aks-audit-log", "WARN", "Enable audit Logs",
                      f"category group 'audit' in {', '.join(grouped)}: kubetrail cannot confirm it contains "
                      "kube-audit; list the category explicitly", fix, cis)]
    return [Check("aks-audit-log", "FAIL", "Enable audit Logs",
                  "no diagnostic setting exports kube-audit or kube-audit-admin to a destination", fix, cis)]


def check_gke(doc: Any) -> list[Check]:
    """``gcloud container clusters describe NAME --format=json``."""
    if not isinstance(doc, dict):
        raise InputError("GKE JSON: expected an object")
    name = doc.get("name", "CLUSTER")
    comps = ((doc.get("loggingConfig") or {}).get("componentConfig") or {}).get("enableComponents") or []
    out = [Check("gke-admin-activity", "PASS", "Audit logs for writes are on",
                 "GKE always writes Kubernetes Admin Activity audit logs (create/update/patch/delete) to Cloud "
                 "Audit Logs; they cannot be turned off"),
           Check("gke-data-access", "WARN", "Audit logs for reads are on",
                 "Data Access audit logs (get/list/watch, e.g. Secret reads) are a project setting that cluster "
                 "describe does not show",
                 "enable DATA_READ and DATA_WRITE for the Kubernetes API service in the project's IAM audit config "
                 "(gcloud projects get-iam-policy PROJECT --format=json | jq .auditConfigs)"),
           Check("gke-policy", "INFO", "Audit policy is fixed by GKE",
                 "GKE's policy (the GCE create-master-audit-policy) drops core Events entirely and logs TokenRequest "
                 "at Metadata; lint a copy with `kubetrail policy lint` to see the gaps")]
    if "APISERVER" not in comps:
        out.append(Check("gke-apiserver-logs", "INFO", "API server component logs are exported",
                         f"loggingConfig does not enable APISERVER for {name} (audit logs do not depend on it)",
                         f"gcloud container clusters update {name} --logging=SYSTEM,WORKLOAD,API_SERVER"))
    return out
