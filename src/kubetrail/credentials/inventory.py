"""Creation events → credentials: CSRs (create, approval, issuance, deletion), TokenRequests, legacy
token and bootstrap-token Secrets, and cluster-admin bindings (for the service-account flag).

Event shapes, levels and versions are in the audit-policy reference §5. The rules that matter here:

* Only a request's final stage counts (``ResponseComplete``, or no stage for lossy formats), and
  only when it succeeded: a CSR the admission plugin refused never became a credential.
* The requester of an impersonated request is the impersonated user (that is whom the apiserver
  records in ``spec.username``); the impersonator is kept beside it.
* Whatever the audit level hid is written down as a policy gap on the credential, never guessed
  silently; where we do infer (an unnamed CSR matched to its approval by time) the step says
  ``probable``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import Credential, step_of
from kubetrail.credentials.pem import decode_certificate, decode_csr
from kubetrail.stages.extract import CREDENTIAL_ID, parse_time_ns
from kubetrail.stages.redact import CLAIMS_ANNOTATION, REDACTED

ISSUED_ID = "authentication.kubernetes.io/issued-credential-id"
LEGACY_TYPE = "kubernetes.io/service-account-token"
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
UNNAMED_CSR = "csr?"
UNNAMED_WINDOW_NS = 3600 * 1_000_000_000  # csrcleaner removes decided CSRs after an hour
YEAR_NS = 365 * 86400 * 1_000_000_000
EXTENDED_SECONDS = 3607  # kubelet's projected-token request that the apiserver silently extends


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def final(meta: Any) -> bool:
    """A request's last stage, and it succeeded."""
    if meta.stage in ("RequestReceived", "ResponseStarted"):
        return False
    return meta.code is None or 200 <= meta.code < 300


def actor(meta: Any) -> tuple[str, list[str], str]:
    """(effective user, their groups, impersonator or '')."""
    if meta.impersonated_user:
        return meta.impersonated_user, list(meta.impersonated_groups), meta.user
    return meta.user, list(meta.groups), ""


def sa_groups(ns: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]


def handle(ledger: Ledger, record: Any) -> None:
    """Apply one record's creation-side meaning, if it has one."""
    m = record.meta
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
            for c in ledger.by_lookup(f"csr:{m.name}")[-1:]:
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


# -- certificates ------------------------------------------------------------------------------
def _spec(event: dict[str, Any]) -> dict[str, Any]:
    spec = dict(_dict(_dict(event.get("requestObject")).get("spec")))
    spec.update(_dict(_dict(event.get("responseObject")).get("spec")))
    return spec


def _new_csr(ledger: Ledger, name: str, record: Any) -> Credential:
    base = f"csr/{name}" if name else f"csr/?{(record.meta.audit_id or record.key)[:8]}"
    return Credential(id=ledger.new_id(base), kind="cert", accounted=True, status="pending",
                      lookup=f"csr:{name}" if name else UNNAMED_CSR, details={"csr_name": name} if name else {})


def csr_created(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    name = m.name
    cred = None
    if name:
        existing = ledger.by_lookup(f"csr:{name}")
        if existing and not any(s.action == "csr-created" for s in existing[-1].chain):
            cred = existing[-1]  # approval or issuance was read before the creation
    cred = cred or _new_csr(ledger, name, record)
    user, groups, imp = actor(m)
    spec = _spec(ev)
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    d = cred.details
    req_meta = _dict(_dict(ev.get("requestObject")).get("metadata"))
    if req_meta.get("generateName"):
        d["generate_name"] = req_meta["generateName"]
    for src, dst in (("signerName", "signer_name"), ("usages", "usages"),
                     ("expirationSeconds", "requested_expiration_seconds")):
        if spec.get(src) is not None:
            d[dst] = spec[src]
    extra = _dict(_dict(ev.get("user")).get("extra"))
    if extra:
        d["requester_extra"] = {k: v for k, v in extra.items() if k != CREDENTIAL_ID}
    if spec.get("username"):
        d["spec_username"] = spec["username"]
    info = decode_csr(spec["request"]) if isinstance(spec.get("request"), str) else None
    if info is not None:
        cred.subject = cred.subject or info.names.cn
        cred.groups = cred.groups or list(info.names.orgs)
        d["csr_subject"] = {"cn": info.names.cn, "orgs": info.names.orgs}
        sans = {k: v for k, v in (("dns", info.names.dns), ("ips", info.names.ips),
                                  ("emails", info.names.emails), ("uris", info.names.uris)) if v}
        if sans:
            d["sans"] = sans
        d["key"] = info.key
        if info.signature_valid is False:
            d["csr_signature_valid"] = False
    elif ev.get("requestObject") is None and ev.get("responseObject") is None:
        cred.add_gap("csr-create-metadata")
    else:
        d["csr_unreadable"] = True
    if not name:
        cred.add_gap("csr-create-no-name")
    cred.drop_gap("csr-create-not-seen")
    cred.chain.insert(0, step_of(record, "csr-created", by=user, impersonator=imp, signer=d.get("signer_name")))
    if cred.status == "":
        cred.status = "pending"
    ledger.put(cred)


def _csr_for(ledger: Ledger, record: Any) -> Credential:
    """The CSR an approval/status event is about; an unnamed create within the hour (probable)."""
    name = record.meta.name
    found = ledger.by_lookup(f"csr:{name}")
    if found:
        return found[-1]
    unnamed = [c for c in ledger.by_lookup(UNNAMED_CSR)
               if c.created_at is not None and 0 <= record.time - c.created_at <= UNNAMED_WINDOW_NS]
    if unnamed:
        cred = unnamed[-1]
        cred.lookup = f"csr:{name}"
        cred.details["csr_name"] = name
        cred.details["name_link"] = "probable"
        return cred
    cred = _new_csr(ledger, name, record)
    cred.status = ""
    cred.add_gap("csr-create-not-seen")
    return cred


def _conditions(event: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for field in ("responseObject", "requestObject"):
        conds = _dict(_dict(event.get(field)).get("status")).get("conditions")
        if isinstance(conds, list) and conds:
            out = [c for c in conds if isinstance(c, dict)]
            break
    return out


def csr_decided(ledger: Ledger, record: Any) -> None:
    cred = _csr_for(ledger, record)
    user, _, imp = actor(record.meta)
    conds = [c for c in _conditions(record.event()) if c.get("type") in ("Approved", "Denied")
             and str(c.get("status", "True")) == "True"]
    if not conds:
        cred.chain.append(step_of(record, "approval-unknown", by=user, impersonator=imp))
        cred.add_gap("csr-approval-no-body")
        if cred.status in ("", "pending"):
            cred.status = "decided"
    else:
        c = conds[-1]
        if c["type"] == "Approved":
            cred.approved_by, cred.approved_at = user, record.time
            if cred.status != "issued":
                cred.status = "approved"
        else:
            cred.denied_by = user
            cred.status = "denied"
        cred.chain.append(step_of(record, c["type"].lower(), by=user, impersonator=imp, reason=c.get("reason"),
                                  message=c.get("message")))
    ledger.put(cred)


def csr_status(ledger: Ledger, record: Any) -> None:
    ev = record.event()
    pem = None
    for field in ("responseObject", "requestObject"):
        v = _dict(_dict(ev.get(field)).get("status")).get("certificate")
        if isinstance(v, str) and v:
            pem = v
            break
    failed = [c for c in _conditions(ev) if c.get("type") == "Failed"]
    if pem is None and not failed and (ev.get("requestObject") is not None or ev.get("responseObject") is not None):
        return  # a status update that neither issues nor fails (e.g. a condition refresh)
    cred = _csr_for(ledger, record)
    user, _, _ = actor(record.meta)
    if failed:
        cred.status = "failed"
        cred.chain.append(step_of(record, "failed", by=user, reason=failed[-1].get("reason"),
                                  message=failed[-1].get("message")))
    elif pem is None:
        cred.chain.append(step_of(record, "status-updated", by=user))
        cred.add_gap("csr-issue-no-body")
    else:
        info = decode_certificate(pem)
        if info is None:
            cred.chain.append(step_of(record, "issued", by=user, certificate="unreadable"))
        else:
            issue_certificate(ledger, cred, info, record, user)
    if pem is not None or failed:
        cred.drop_gap("csr-issue-no-body")
    ledger.put(cred)


def issue_certificate(ledger: Ledger, cred: Credential, info: Any, record: Any, signer: str) -> None:
    cid = f"X509SHA256={info.fingerprint}"
    seen = ledger.by_credential_id(cid)
    if seen is not None and seen.id != cred.id and not seen.accounted:
        ledger.merge(seen, cred)  # used before we read its issuance
    cred.credential_id, cred.fingerprint = cid, info.fingerprint
    cred.subject, cred.groups = info.names.cn or cred.subject, list(info.names.orgs) or cred.groups
    cred.not_before, cred.expires_at, cred.issued_at = info.not_before, info.not_after, record.time
    cred.details.update(serial=info.serial, issuer=info.issuer, signed_by=signer)
    if cred.status in ("", "pending", "approved", "decided"):
        if not cred.approved_by:
            implied = [s for s in cred.chain if s.action == "approval-unknown"]
            if implied:
                cred.approved_by, cred.approved_at = implied[-1].by, implied[-1].time
                cred.details["approval_implied_by_issuance"] = True
        cred.status = "issued"
    cred.chain.append(step_of(record, "issued", by=signer, serial=info.serial, fingerprint=info.fingerprint))


# -- tokens --------------------------------------------------------------------------------------
def token_requested(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    ns, sa = m.namespace, m.name
    ann = _dict(ev.get("annotations"))
    claims: dict[str, Any] = {}
    if isinstance(ann.get(CLAIMS_ANNOTATION), str):
        try:
            claims = _dict(orjson.loads(ann[CLAIMS_ANNOTATION]))
        except orjson.JSONDecodeError:
            claims = {}
    jti = ""
    issued = ann.get(ISSUED_ID)
    if isinstance(issued, str) and issued.startswith("JTI="):
        jti = issued[4:]
    elif isinstance(claims.get("jti"), str):
        jti = claims["jti"]
    cred = ledger.get(f"jti/{jti}") if jti else None
    if cred is None:
        base = f"jti/{jti}" if jti else f"token/{ns}/{sa}/{(m.audit_id or record.key)[:8]}"
        cred = Credential(id=ledger.new_id(base), kind="token")
    user, groups, imp = actor(m)
    cred.accounted, cred.status = True, "created"
    cred.subject = f"system:serviceaccount:{ns}:{sa}"
    cred.groups = cred.groups or sa_groups(ns)
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    if jti:
        cred.jti, cred.credential_id = jti, f"JTI={jti}"
    else:
        cred.add_gap("token-no-jti")
    req_spec = _dict(_dict(ev.get("requestObject")).get("spec"))
    resp = _dict(ev.get("responseObject"))
    spec = {**req_spec, **_dict(resp.get("spec"))}
    d = cred.details
    d.update(namespace=ns, service_account=sa)
    if ev.get("requestObject") is None and not resp:
        cred.add_gap("token-metadata")
    if spec.get("audiences"):
        d["audiences"] = spec["audiences"]
    elif req_spec and req_spec.get("audiences") is None:
        d["audiences"] = "apiserver default"
    bound = _dict(spec.get("boundObjectRef"))
    if bound:
        d["bound_object"] = {k: bound[k] for k in ("kind", "name", "uid") if k in bound}
    # the lookup finds the token again when what it is bound to is deleted (revoke)
    cred.lookup = {"Pod": f"pod:{ns}/{bound.get('name')}", "Secret": f"secret:{ns}/{bound.get('name')}",
                   "Node": f"node:{bound.get('name')}"}.get(str(bound.get("kind")), f"sa:{ns}/{sa}")
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, int):
        d["requested_expiration_seconds"] = seconds
    kio = _dict(claims.get("kubernetes.io"))
    for k in ("pod", "node", "secret"):
        if _dict(kio.get(k)).get("name"):
            d[f"claims_{k}"] = _dict(kio[k]).get("name")
    if claims.get("aud") and "audiences" not in d:
        d["audiences"] = claims["aud"]
    nominal = parse_time_ns(_dict(resp.get("status")).get("expirationTimestamp"))
    if nominal is None and isinstance(seconds, int):
        nominal = record.time + seconds * 1_000_000_000
    cred.nominal_expires_at = nominal
    if isinstance(claims.get("exp"), int):
        cred.expires_at = claims["exp"] * 1_000_000_000
        if isinstance(kio.get("warnafter"), int):
            d["warnafter"] = kio["warnafter"] * 1_000_000_000
    elif seconds == EXTENDED_SECONDS and bound.get("kind") == "Pod":
        cred.expires_at = record.time + YEAR_NS  # the apiserver's silent extension, assumed
        d["expiry_assumed_extended"] = True
    else:
        cred.expires_at = nominal
    if cred.expires_at is None:
        d["expiry_unknown"] = True
    cred.chain.insert(0, step_of(record, "token-requested", by=user, impersonator=imp, service_account=f"{ns}/{sa}",
                                 jti=jti))
    ledger.put(cred)


# -- secrets ---------------------------------------------------------------------------------------
def _secret_value(obj: dict[str, Any], key: str) -> str | None:
    """A Secret data value that redaction left readable (stringData, or base64 data)."""
    v = _dict(obj.get("stringData")).get(key)
    if isinstance(v, str) and v != REDACTED:
        return v
    v = _dict(obj.get("data")).get(key)
    if isinstance(v, str) and v != REDACTED:
        try:
            return base64.b64decode(v).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
    return None


def secret_created(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    obj = _dict(ev.get("responseObject")) or _dict(ev.get("requestObject"))
    stype = obj.get("type")
    ann = _dict(_dict(obj.get("metadata")).get("annotations"))
    ns, name = m.namespace, m.name
    if stype == BOOTSTRAP_TYPE or (ns == "kube-system" and name.startswith("bootstrap-token-") and not stype):
        bootstrap_created(ledger, record, obj, ns, name)
    elif stype == LEGACY_TYPE or (ann.get(SA_NAME_ANNOTATION) and not stype):
        legacy_created(ledger, record, ns, name, str(ann.get(SA_NAME_ANNOTATION) or ""), typed=True)


def legacy_created(ledger: Ledger, record: Any, ns: str, name: str, sa: str, typed: bool) -> Credential:
    cred = ledger.get(f"legacy/{ns}/{name}") or Credential(id=f"legacy/{ns}/{name}", kind="legacy")
    user, groups, imp = actor(record.meta)
    cred.accounted, cred.status = True, "created" if cred.status in ("", "in-use") else cred.status
    cred.lookup = f"secret:{ns}/{name}"
    if sa:
        cred.subject = f"system:serviceaccount:{ns}:{sa}"
        cred.groups = cred.groups or sa_groups(ns)
        cred.details["service_account"] = sa
    cred.details.update(namespace=ns, secret=name)
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    if not typed:
        cred.add_gap("legacy-type-hidden")
    cred.drop_gap("legacy-create-not-seen")
    cred.chain.insert(0, step_of(record, "secret-created", by=user, impersonator=imp, secret=f"{ns}/{name}",
                                 link="exact" if typed else "probable"))
    ledger.put(cred)
    return cred


def bootstrap_created(ledger: Ledger, record: Any, obj: dict[str, Any], ns: str, name: str) -> None:
    token_id = _secret_value(obj, "token-id") or name.removeprefix("bootstrap-token-")
    cred = ledger.get(f"bootstrap/{token_id}") or Credential(id=f"bootstrap/{token_id}", kind="bootstrap")
    user, groups, imp = actor(record.meta)
    cred.accounted, cred.status = True, "created"
    cred.lookup = f"secret:{ns}/{name}"
    cred.subject = f"system:bootstrap:{token_id}"
    extra = _secret_value(obj, "auth-extra-groups")
    cred.groups = ["system:bootstrappers"] + [g for g in (extra or "").split(",") if g]
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    d = cred.details
    d.update(token_id=token_id, secret=f"{ns}/{name}")
    expiration = _secret_value(obj, "expiration")
    if expiration:
        cred.expires_at = parse_time_ns(expiration)
    usages = [k.removeprefix("usage-bootstrap-") for k in ("usage-bootstrap-authentication", "usage-bootstrap-signing")
              if _secret_value(obj, k) == "true"]
    if usages:
        d["usages"] = usages
    desc = _secret_value(obj, "description")
    if desc:
        d["description"] = desc
    if expiration is None:
        d["expiry_unknown"] = True
        cred.add_gap("bootstrap-data-hidden")
    cred.drop_gap("bootstrap-create-not-seen")
    cred.chain.insert(0, step_of(record, "secret-created", by=user, impersonator=imp, secret=f"{ns}/{name}"))
    ledger.put(cred)


# -- bindings ------------------------------------------------------------------------------------
def binding_changed(ledger: Ledger, record: Any) -> None:
    m = record.meta
    binding = (f"ClusterRoleBinding/{m.name}" if m.resource == "clusterrolebindings"
               else f"RoleBinding/{m.namespace}/{m.name}")
    if m.verb == "delete":
        ledger.set_binding(binding, [], record)
        return
    ev = record.event()
    obj = _dict(ev.get("responseObject")) or _dict(ev.get("requestObject"))
    role = _dict(obj.get("roleRef"))
    if not role:
        return  # Metadata level, or a patch that does not show the roleRef
    subjects: list[str] = []
    if role.get("kind") == "ClusterRole" and role.get("name") == "cluster-admin":
        for s in obj.get("subjects") or []:
            s = _dict(s)
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
