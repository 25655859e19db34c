"""Risk flags on credentials, each with its explanation and the record that shows it, and the
policy-gap notes that say what the audit level hid.

A flag is raised once per credential (``credential_flags`` primary key). Most flags are standing
facts about the inventory (a long-lived token, a legacy token in use, a certificate minted outside
the CSR API): they are listed by ``kubetrail creds list`` and summarised by ``creds summary``, and
raise no alert. The flags that mean an attack in progress (``ATTACK``) raise one alert each
(``consumer.py``). Flags are re-evaluated whenever a credential or its uses change; a flag is never
withdrawn, because the evidence stays in the trail; a fact that later turns out to be an attack
(the creation of the credential arrived after its uses) is promoted and alerted then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from kubetrail.alerts.config import DetectSettings
from kubetrail.alerts.tuning import disabled, excepted
from kubetrail.credentials.events import acting, as_seen
from kubetrail.credentials.ledger import Aggregate, Ledger
from kubetrail.credentials.model import Credential, Flag, Step
from kubetrail.timefmt import format_ns

YEAR_NS = 365 * 86400 * 1_000_000_000
DAY_NS = 86400 * 1_000_000_000
NEW_IP_AFTER_USES = 10  # a new source IP after this many uses (or a day) breaks an established pattern
MASTERS = "system:masters"
PRIVILEGED_GROUPS = {MASTERS, "kubeadm:cluster-admins", "system:cluster-admins"}
NODE_GROUPS = {"system:nodes", "system:bootstrappers"}

LINT = "Check the audit policy with `kubetrail policy lint`."
GAPS = {
    "csr-create-metadata": "The CSR creation was logged at Metadata level: subject (CN/O), SANs, signer, usages and "
                           "requested lifetime are unknown; log certificatesigningrequests at RequestResponse.",
    "csr-create-no-name": "The CSR was created with generateName and logged below RequestResponse, so its name is "
                          "not in the log; approval and issuance were matched to it by time (probable).",
    "csr-create-not-seen": "Approval or issuance was seen, but not the CSR creation: requester and requested subject "
                           "are unknown (created before logging began, or the policy drops CSR creates).",
    "csr-approval-no-body": "The approval was logged without a body: whether it approved or denied, and the reason, "
                            "are unknown.",
    "csr-issue-no-body": "The signer's status update was logged without a body: the issued certificate (fingerprint, "
                         "serial, notAfter) is unknown, so uses can only be linked by identity.",
    "cert-issuance-not-seen": "Certificate seen in use (X509SHA256 credential id) but never issued through the CSR "
                              "API in the trail: minted with the CA key (kubeadm, openssl), or before logging began.",
    "token-no-jti": "The TokenRequest has no issued-credential-id annotation (cluster older than 1.30, or "
                    "ServiceAccountTokenJTI off): uses are linked by identity and time (probable).",
    "token-metadata": "The TokenRequest was logged at Metadata level: audiences, bound object and requested "
                      "lifetime are unknown; log serviceaccounts/token at Request level (never RequestResponse).",
    "token-issuance-not-seen": "Token seen in use (JTI credential id) but its TokenRequest is not in the trail: "
                               "issued before logging began, the policy drops serviceaccounts/token, or the token was "
                               "signed outside the apiserver with a stolen signing key.",
    "external-token": "A JWT-authenticator (OIDC) token: issued outside the cluster, so no issuance can be audited.",
    "legacy-type-hidden": "The Secret creation was logged at Metadata level, so its type is not visible; it was "
                          "matched to the token's uses by name.",
    "legacy-create-not-seen": "Legacy token in use but its Secret's creation is not in the trail.",
    "bootstrap-data-hidden": "The bootstrap token's expiration, usages and extra groups are Secret data, which the "
                             "audit level or kubetrail's redaction kept out of the log.",
    "bootstrap-create-not-seen": "Bootstrap token in use but its Secret's creation is not in the trail.",
}


def gap_notes(cred: Credential) -> list[dict[str, str]]:
    return [{"code": g, "note": f"{GAPS.get(g, g)} {LINT}"} for g in cred.gaps]


def _flag(name: str, priority: str, text: str, ev: Step | dict[str, Any] | None) -> Flag:
    if isinstance(ev, Step):
        return Flag(flag=name, priority=priority, explanation=text, time=ev.time, key=ev.key, audit_id=ev.audit_id,
                    stage=ev.stage, leaf_index=ev.leaf_index)
    ev = ev or {}
    return Flag(flag=name, priority=priority, explanation=text, time=ev.get("time", 0), key=ev.get("key", ""),
                audit_id=ev.get("audit_id", ""), stage=ev.get("stage", ""), leaf_index=ev.get("leaf_index"))


def _first(cred: Credential, *actions: str) -> Step | None:
    """The first step of the first action (in the order given) that the chain has."""
    for action in actions:
        for s in cred.chain:
            if s.action == action:
                return s
    return None


def _origin(cred: Credential, agg: Aggregate) -> Step | dict[str, Any] | None:
    return _first(cred, "issued", "csr-created", "token-requested", "secret-created") or agg.first_use or None


def _is_node(user: str, groups: list[str]) -> bool:
    return user.startswith(("system:node:", "system:bootstrap:")) or bool(NODE_GROUPS & set(groups))


def _is_controller(user: str) -> bool:
    return user.startswith(("system:", "eks:"))


LOOPBACK = "kube-apiserver loopback client"


def machinery_creator(cred: Credential) -> str:
    """Which part of the cluster's own machinery made this credential, by what it made ('' when a
    person or a workload did): the kubelet minting its pods' tokens and renewing its client
    certificate, kube-controller-manager minting tokens for its controllers (kube-system) and its
    tokens controller filling legacy token Secrets. Impersonated requests are never machinery."""
    who = cred.created_by
    if not who or cred.impersonator:
        return ""
    if cred.kind == "token":
        bound = str((cred.details.get("bound_object") or {}).get("kind", ""))
        if who.startswith("system:node:") and bound in ("", "Pod"):
            return "kubelet (pod token)"
        if who == "system:kube-controller-manager" and cred.details.get("namespace") == "kube-system" and not bound:
            return "kube-controller-manager (controller token)"
    if cred.kind == "legacy" and who == "system:kube-controller-manager":
        return "tokens controller"
    if cred.kind == "cert" and cred.subject.startswith("system:node:") and (
            who == cred.subject or who.startswith("system:bootstrap:")):
        return "kubelet (client certificate)"
    return ""


def created_by_person(cred: Credential) -> bool:
    """Created in the trail by someone who is not the cluster's machinery (a person, or a workload)."""
    return bool(cred.created_by) and not machinery_creator(cred)


# Flags that mean an attack in progress: alerted once per credential. ``None``: always; otherwise
# only when the predicate holds. Every other flag is a standing fact (inventory only).
ATTACK: dict[str, Callable[[Credential], bool] | None] = {
    "self-approved": None,  # one identity requested and approved a certificate
    "system-identity": None,  # a certificate for a control-plane or another node's name via the CSR API
    "new-source-ip": None,  # an established credential suddenly used from a new address
    "subject-mismatch": None,  # a token id presented by another identity: forged or colliding
    "jti-collision": None,  # one JTI issued twice: an edited log or tokens minted outside the apiserver
    "decision-conflict": None,  # approved and denied: an edited log or a reused name
    "privileged-group": created_by_person,  # cluster-admin-equivalent credential made by a person
    "cluster-admin-sa": created_by_person,  # a token for a cluster-admin service account made by a person
}
FACTS = ("long-lived", "multiple-source-ips", "legacy-token-in-use", "unaccounted", "human-approval",
         "minted-for-another")


def is_attack(flag: str, cred: Credential) -> bool:
    if flag not in ATTACK:
        return False
    when = ATTACK[flag]
    return True if when is None else when(cred)


def privileged(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    bad = [g for g in cred.groups if g in PRIVILEGED_GROUPS]
    if not bad or cred.details.get("machinery") == LOOPBACK:
        return
    if MASTERS in bad:
        text = (f"Groups include {MASTERS}: cluster-admin that no RBAC change can take away (the privileged-group "
                f"authorizer runs first); only expiry{' at ' + str(format_ns(cred.expires_at)) if cred.expires_at else ''}"
                " or rotating the cluster CA ends it.")
        yield _flag("privileged-group", "Critical", text, _origin(cred, agg))
    else:
        yield _flag("privileged-group", "Error", f"Groups include {', '.join(bad)}, bound to cluster-admin.",
                    _origin(cred, agg))


def system_identity(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    """Judged by who really asked: behind an impersonated request, the impersonator (its groups too)."""
    step = _first(cred, "csr-created")
    if cred.kind != "cert" or step is None or not cred.subject.startswith("system:"):
        return
    who = acting(cred.created_by, cred.impersonator)
    groups = cred.details.get("impersonator_groups", []) if cred.impersonator else cred.created_by_groups
    seen = as_seen(cred.created_by, cred.impersonator)
    if cred.subject.startswith("system:node:"):
        if who == cred.subject or (who.startswith("system:bootstrap:") or "system:bootstrappers" in groups):
            return
        if who.startswith("system:node:"):
            text = f"{seen} requested a certificate for another node, {cred.subject}."
        else:
            text = f"CN {cred.subject} names a node, but the requester {seen} is not that node nor a bootstrap token."
    else:  # control-plane identities are minted offline (kubeadm); through the CSR API nobody should ask
        text = (f"CN {cred.subject} names a Kubernetes system component, requested through the CSR API by {seen}"
                f"{' (a node: possible escalation from a compromised node)' if _is_node(who, groups) else ''}.")
    yield _flag("system-identity", "Error", text, step)


def self_approved(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    """The same identity on both sides, apparent or real: impersonating a controller to approve one's own
    request is still self-approval."""
    step = _first(cred, "approved")
    if step is None or not cred.created_by:
        return
    approver_imp = str(step.detail.get("impersonator", ""))
    if {step.by, approver_imp} & {cred.created_by, cred.impersonator} - {""}:
        text = f"{step.by} approved its own certificate request."
        if approver_imp or cred.impersonator:
            text = (f"{as_seen(step.by, approver_imp)} approved the certificate request made by "
                    f"{as_seen(cred.created_by, cred.impersonator)}: the same identity on both sides, judged by who "
                    "authenticated, not whom they impersonated.")
        yield _flag("self-approved", "Error", text, step)


def human_approval(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    """A person approving, even while impersonating a controller (the impersonator is who approved)."""
    step = _first(cred, "approved")
    if step is None:
        return
    imp = str(step.detail.get("impersonator", ""))
    if not _is_controller(acting(step.by, imp)):
        reason = step.detail.get("reason")
        yield _flag("human-approval", "Warning",
                    f"Approved by {as_seen(step.by, imp)}, a person rather than a controller"
                    f"{f' (reason {reason})' if reason else ''}.", step)


def decision_conflict(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    step = _first(cred, "decision-conflict")
    first = _first(cred, "approved", "denied")
    if step is None or first is None:
        return
    yield _flag("decision-conflict", "Warning",
                f"{as_seen(step.by, str(step.detail.get('impersonator', '')))} {step.detail.get('decision')} this "
                f"request at {format_ns(step.time)} after {first.by} had {first.action} it at "
                f"{format_ns(first.time)}; the first decision is kept. A CSR name reused after deletion, files read "
                "out of order or an edited log can cause this: check both records.", step)


def long_lived(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    if cred.details.get("expiry_unknown") or (cred.kind == "cert" and cred.status != "issued" and cred.accounted):
        return
    start = cred.not_before or cred.issued_at or cred.created_at or agg.first_used
    if cred.expires_at is None:
        if cred.kind == "legacy":
            yield _flag("long-lived", "Warning", "A legacy Secret-based token never expires; it works until the "
                        "Secret is deleted.", _origin(cred, agg))
        return
    if start is not None and cred.expires_at - start > YEAR_NS + DAY_NS:
        days = (cred.expires_at - start) // DAY_NS
        text = f"Valid for {days} days (until {format_ns(cred.expires_at)}), more than a year."
        if cred.kind == "cert":
            text += " Client certificates cannot be revoked before notAfter."
        yield _flag("long-lived", "Warning", text, _origin(cred, agg))


def source_ips(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    ips = sorted(agg.ips.items(), key=lambda kv: kv[1].get("time", 0))
    if len(ips) > 1:
        yield _flag("multiple-source-ips", "Warning",
                    f"Used from {len(agg.ips)} source IPs: {', '.join(ip for ip, _ in ips[:10])}.", ips[1][1])
    if cred.kind == "unknown":
        return  # an identity, not one credential (replicas, people roaming): detect/stateful judges identities
    for ip, info in ips[1:]:
        if info.get("uses_before", 0) >= NEW_IP_AFTER_USES or info.get("after_first_ns", 0) > DAY_NS:
            yield _flag("new-source-ip", "Error",
                        f"First use from {ip} at {format_ns(info.get('time'))}, after {info.get('uses_before')} "
                        f"uses from {', '.join(i for i, _ in ips if i != ip)[:200]} only: possibly stolen.", info)
            return


def legacy_in_use(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    if cred.kind == "legacy" and agg.uses:
        yield _flag("legacy-token-in-use", "Warning",
                    "A legacy Secret-based service-account token (no audience, no expiry) is in use; move the "
                    "client to a bound token (TokenRequest) and delete the Secret.", agg.first_use)


def cluster_admin(cred: Credential, agg: Aggregate, ledger: Ledger) -> Iterator[Flag]:
    if cred.kind not in ("token", "legacy") or cred.subject.count(":") != 3:
        return
    _, _, ns, sa = cred.subject.split(":")
    rows = ledger.admin_bindings([f"sa:{ns}/{sa}", "group:system:serviceaccounts", f"group:system:serviceaccounts:{ns}"])
    if rows:
        binding, _, key, audit_id, leaf, t = rows[0]
        scope = "cluster-wide" if binding.startswith("Cluster") else f"in namespace {binding.split('/')[1]}"
        yield _flag("cluster-admin-sa", "Error",
                    f"Token for service account {ns}/{sa}, which {binding} binds to cluster-admin ({scope}).",
                    {"time": t, "key": key, "audit_id": audit_id, "leaf_index": leaf})


def minted_for_another(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    """A token minted by one identity for another service account (``kubectl create token`` by a
    person, or a service account minting for another one: lateral movement). The kubelet's pod tokens
    and kube-controller-manager's controller tokens are the machinery and carry no flag."""
    step = _first(cred, "token-requested")
    if cred.kind != "token" or step is None or not cred.created_by or cred.created_by == cred.subject:
        return
    if machinery_creator(cred):
        return
    who = as_seen(cred.created_by, cred.impersonator)
    what = "a service account" if acting(cred.created_by, cred.impersonator).startswith("system:serviceaccount:") \
        else "an identity that is not the service account"
    yield _flag("minted-for-another", "Warning",
                f"Minted by {who} ({what}) for {cred.subject}: whoever holds it acts as that service account.", step)


def unaccounted(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    if not cred.accounted and cred.kind in ("cert", "token") and not cred.details.get("issuer") and agg.uses:
        what = "certificate" if cred.kind == "cert" else "service-account token"
        yield _flag("unaccounted", "Notice",
                    f"A {what} for {cred.subject} is in use, but its issuance is not in the trail.", agg.first_use)


def jti_collision(cred: Credential, agg: Aggregate, ledger: Ledger) -> Iterator[Flag]:
    others = cred.details.get("jti_collision")
    if cred.kind != "token" or not others:
        return
    ev = cred.details.get("jti_collision_evidence") or _origin(cred, agg)
    yield _flag("jti-collision", "Error",
                f"JTI {cred.jti} was issued twice: this token ({cred.subject}, requested by {cred.created_by or '?'}) "
                f"and {', '.join(others)}. JTIs are random; a repeat means an edited log, a broken issuer or tokens "
                "minted outside the apiserver. The first issuance is kept as issued; uses are linked to the token "
                "whose service account presents it.", ev)


def subject_mismatch(cred: Credential, agg: Aggregate, _: Ledger) -> Iterator[Flag]:
    use = cred.details.get("mismatched_use")
    if use:
        yield _flag("subject-mismatch", "Error",
                    f"JTI {cred.jti or cred.credential_id} belongs to a token for {cred.subject}, but "
                    f"{use.get('user')} presented it at {format_ns(use.get('time'))}: a forged token or a colliding "
                    "id. Counted as a mismatched use, not an exact one.", use)


RULES: list[Callable[[Credential, Aggregate, Ledger], Iterator[Flag]]] = [
    privileged, system_identity, self_approved, human_approval, decision_conflict, long_lived, source_ips, legacy_in_use,
    cluster_admin, minted_for_another, unaccounted, jti_collision, subject_mismatch,
]
RULE_PREFIX = "Credential risk: "
DESCRIPTIONS = {
    "privileged-group": "The credential's groups include system:masters, kubeadm:cluster-admins or system:cluster-admins.",
    "system-identity": "A CSR names a control-plane component, or a node other than the requester.",
    "self-approved": "The identity that requested a certificate approved it.",
    "human-approval": "A CSR approved by a person rather than a controller.",
    "decision-conflict": "A CSR approved and denied (an edited log or a reused name).",
    "long-lived": "Valid for more than a year, or never expiring (legacy tokens).",
    "multiple-source-ips": "Used from more than one source IP.",
    "new-source-ip": "A new source IP after an established pattern (10 uses or a day).",
    "legacy-token-in-use": "A legacy Secret-based token is in use.",
    "cluster-admin-sa": "A token for a service account bound to cluster-admin.",
    "minted-for-another": "A token minted by an identity other than the service account (not the kubelet or "
                          "kube-controller-manager at work).",
    "unaccounted": "A certificate or token in use whose issuance is not in the trail.",
    "jti-collision": "One JTI issued twice.",
    "subject-mismatch": "A JTI presented by another identity than its service account.",
}
# flag -> the priority it is raised with (the worst where it depends on the credential)
PRIORITIES = {"privileged-group": "Critical", "system-identity": "Error", "self-approved": "Error",
              "human-approval": "Warning", "decision-conflict": "Warning", "long-lived": "Warning",
              "multiple-source-ips": "Warning", "new-source-ip": "Error", "legacy-token-in-use": "Warning",
              "cluster-admin-sa": "Error", "minted-for-another": "Warning", "unaccounted": "Notice",
              "jti-collision": "Error", "subject-mismatch": "Error"}


def exception_values(cred: Credential) -> dict[str, str]:
    """What a detect.yaml exception can compare for a credential risk (alerts/tuning.py)."""
    return {"subject": cred.subject, "credential": cred.credential_id or cred.id, "id": cred.id, "kind": cred.kind,
            "created_by": cred.created_by}


# The flags each rule can raise (tests/unit/speed checks this against the rules' source).
RULE_FLAGS: dict[Callable[[Credential, Aggregate, Ledger], Iterator[Flag]], frozenset[str]] = {
    privileged: frozenset({"privileged-group"}), system_identity: frozenset({"system-identity"}),
    self_approved: frozenset({"self-approved"}), human_approval: frozenset({"human-approval"}),
    decision_conflict: frozenset({"decision-conflict"}), long_lived: frozenset({"long-lived"}),
    source_ips: frozenset({"multiple-source-ips", "new-source-ip"}), legacy_in_use: frozenset({"legacy-token-in-use"}),
    cluster_admin: frozenset({"cluster-admin-sa"}), minted_for_another: frozenset({"minted-for-another"}),
    unaccounted: frozenset({"unaccounted"}), jti_collision: frozenset({"jti-collision"}),
    subject_mismatch: frozenset({"subject-mismatch"}),
}


def evaluate(cred: Credential, agg: Aggregate, ledger: Ledger, settings: DetectSettings | None = None,
             settled: set[str] | frozenset[str] = frozenset()) -> list[Flag]:
    """The flags this credential has now, each marked attack (``alert``) or fact; flags turned off or
    excepted in detect.yaml are left out. Rules whose every flag is ``settled`` (raised already, as an
    attack: nothing a new answer could add or promote) are not run: per use, most rules are settled."""
    out: list[Flag] = []
    for rule in RULES:
        if settled and RULE_FLAGS[rule] <= settled:
            continue
        for f in rule(cred, agg, ledger):
            name = RULE_PREFIX + f.flag
            if settings is not None and (disabled(settings.disable, name, ("credentials",)) or
                                         excepted(settings.exceptions, name, exception_values(cred))):
                continue
            f.alert = is_attack(f.flag, cred)
            out.append(f)
    return out
