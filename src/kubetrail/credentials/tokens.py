"""Tokens: TokenRequests (``serviceaccounts/token``), legacy token Secrets and bootstrap-token Secrets.

The token itself never reaches this module: redaction replaced it and kept the decoded claims in
the ``kubetrail.dev/token-claims`` annotation. Expiry is kept twice for TokenRequests: the nominal
one the API reported and the effective one (the JWT ``exp``), which for kubelet pod tokens is a year
later (audit-policy reference §5.2).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from kubetrail.credentials.events import actor, as_dict, normalise_credential_id, sa_groups
from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import Credential, step_of
from kubetrail.stages.extract import parse_time_ns
from kubetrail.stages.redact import CLAIMS_ANNOTATION, REDACTED

ISSUED_ID = "authentication.kubernetes.io/issued-credential-id"
LEGACY_TYPE = "kubernetes.io/service-account-token"
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
YEAR_NS = 365 * 86400 * 1_000_000_000
EXTENDED_SECONDS = 3607  # kubelet's projected-token request that the apiserver silently extends


def token_requested(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    ns, sa = m.namespace, m.name
    ann = as_dict(ev.get("annotations"))
    claims: dict[str, Any] = {}
    if isinstance(ann.get(CLAIMS_ANNOTATION), str):
        try:
            claims = as_dict(orjson.loads(ann[CLAIMS_ANNOTATION]))
        except orjson.JSONDecodeError:
            claims = {}
    jti = ""
    issued = normalise_credential_id(ann[ISSUED_ID]) if isinstance(ann.get(ISSUED_ID), str) else ""
    if issued.startswith("JTI="):
        jti = issued[4:]
    elif isinstance(claims.get("jti"), str):
        jti = claims["jti"].strip()
    subject = f"system:serviceaccount:{ns}:{sa}"
    cred, first = None, None
    for c in ledger.all_by_credential_id(f"JTI={jti}") if jti else []:
        if c.accounted:
            if m.audit_id and any(s.action == "token-requested" and s.audit_id == m.audit_id for s in c.chain):
                return  # the same request read again (a second copy of the log, a re-sent batch): one issuance
            first = first or c  # issued before: a JTI collision, and the first issuance is kept
        elif c.kind == "token" and c.subject in ("", subject):
            cred = c  # used before we read its issuance
    if cred is None:
        base = f"jti/{jti}" if jti else f"token/{ns}/{sa}/{(m.audit_id or record.key)[:8]}"
        cred = Credential(id=ledger.new_id(base), kind="token")
    if first is not None:
        _collision(ledger, first, cred, record)
    user, groups, imp = actor(m)
    cred.accounted, cred.status = True, "created"
    cred.subject = subject
    cred.groups = cred.groups or sa_groups(ns)
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    if jti:
        cred.jti, cred.credential_id = jti, f"JTI={jti}"
    else:
        cred.add_gap("token-no-jti")
    req_spec = as_dict(as_dict(ev.get("requestObject")).get("spec"))
    resp = as_dict(ev.get("responseObject"))
    spec = {**req_spec, **as_dict(resp.get("spec"))}
    d = cred.details
    d.update(namespace=ns, service_account=sa)
    if ev.get("requestObject") is None and not resp:
        cred.add_gap("token-metadata")
    if spec.get("audiences"):
        d["audiences"] = spec["audiences"]
    elif req_spec and req_spec.get("audiences") is None:
        d["audiences"] = "apiserver default"
    bound = as_dict(spec.get("boundObjectRef"))
    if bound:
        d["bound_object"] = {k: bound[k] for k in ("kind", "name", "uid") if k in bound}
    # the lookup finds the token again when what it is bound to is deleted (revoke)
    cred.lookup = {"Pod": f"pod:{ns}/{bound.get('name')}", "Secret": f"secret:{ns}/{bound.get('name')}",
                   "Node": f"node:{bound.get('name')}"}.get(str(bound.get("kind")), f"sa:{ns}/{sa}")
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, int):
        d["requested_expiration_seconds"] = seconds
    kio = as_dict(claims.get("kubernetes.io"))
    for k in ("pod", "node", "secret"):
        if as_dict(kio.get(k)).get("name"):
            d[f"claims_{k}"] = as_dict(kio[k]).get("name")
    if claims.get("aud") and "audiences" not in d:
        d["audiences"] = claims["aud"]
    nominal = parse_time_ns(as_dict(resp.get("status")).get("expirationTimestamp"))
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


def _collision(ledger: Ledger, first: Credential, second: Credential, record: Any) -> None:
    """A second TokenRequest with a JTI already issued: both stay, each names the other (flags.py)."""
    for a, b in ((first, second), (second, first)):
        others = a.details.setdefault("jti_collision", [])
        if b.id not in others:
            others.append(b.id)
    first.details.setdefault("jti_collision_evidence", {"key": record.key, "audit_id": record.meta.audit_id,
                                                        "stage": record.meta.stage, "leaf_index": record.leaf_index,
                                                        "time": record.time})
    ledger.put(first)


def _secret_value(obj: dict[str, Any], key: str) -> str | None:
    """A Secret data value that redaction left readable (stringData, or base64 data)."""
    v = as_dict(obj.get("stringData")).get(key)
    if isinstance(v, str) and v != REDACTED:
        return v
    v = as_dict(obj.get("data")).get(key)
    if isinstance(v, str) and v != REDACTED:
        try:
            return base64.b64decode(v).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
    return None


def secret_created(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    obj = as_dict(ev.get("responseObject")) or as_dict(ev.get("requestObject"))
    stype = obj.get("type")
    ann = as_dict(as_dict(obj.get("metadata")).get("annotations"))
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
