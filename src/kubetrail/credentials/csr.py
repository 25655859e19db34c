"""Client certificates through the CSR API: creation, approval or denial, issuance, deletion.

``spec.request`` gives the subject (CN = user, O = groups) and SANs; the signer's ``status.certificate``
gives the SHA-256 of the leaf DER, which is the ``X509SHA256=`` credential id of every later use
(audit-policy reference §5.1). A CSR created with ``generateName`` below RequestResponse level has no
name in the log; its approval is matched to it by time and marked probable.
"""

from __future__ import annotations

from typing import Any

from kubetrail.credentials.events import actor, as_dict
from kubetrail.credentials.ledger import Ledger
from kubetrail.credentials.model import Credential, step_of
from kubetrail.credentials.pem import decode_certificate, decode_csr
from kubetrail.stages.extract import CREDENTIAL_ID

UNNAMED_CSR = "csr?"
UNNAMED_WINDOW_NS = 3600 * 1_000_000_000  # csrcleaner removes decided CSRs after an hour


def _spec(event: dict[str, Any]) -> dict[str, Any]:
    spec = dict(as_dict(as_dict(event.get("requestObject")).get("spec")))
    spec.update(as_dict(as_dict(event.get("responseObject")).get("spec")))
    return spec


def _new_csr(ledger: Ledger, name: str, record: Any) -> Credential:
    base = f"csr/{name}" if name else f"csr/?{(record.meta.audit_id or record.key)[:8]}"
    return Credential(id=ledger.new_id(base), kind="cert", accounted=True, status="pending",
                      lookup=f"csr:{name}" if name else UNNAMED_CSR, details={"csr_name": name} if name else {})


def csr_created(ledger: Ledger, record: Any) -> None:
    m = record.meta
    ev = record.event()
    name = m.name
    cred = _held_for(ledger, name, record.time) if name else None
    cred = cred or _new_csr(ledger, name, record)
    user, groups, imp = actor(m)
    if imp:
        cred.details["impersonator_groups"] = [g for g in m.groups if g != "system:authenticated"]
    spec = _spec(ev)
    cred.created_by, cred.created_by_groups, cred.impersonator = user, groups, imp
    cred.created_at = record.time
    d = cred.details
    req_meta = as_dict(as_dict(ev.get("requestObject")).get("metadata"))
    if req_meta.get("generateName"):
        d["generate_name"] = req_meta["generateName"]
    for src, dst in (("signerName", "signer_name"), ("usages", "usages"),
                     ("expirationSeconds", "requested_expiration_seconds")):
        if spec.get(src) is not None:
            d[dst] = spec[src]
    extra = as_dict(as_dict(ev.get("user")).get("extra"))
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


def _created(c: Credential) -> bool:
    return any(s.action == "csr-created" for s in c.chain)


def _since(c: Credential) -> int | None:
    """When the CSR existed at the latest: its creation, or (creation not read yet) its first step."""
    if c.created_at is not None:
        return c.created_at
    return min((s.time for s in c.chain), default=None)


def _deleted_before(c: Credential, t: int) -> bool:
    return any(s.action == "csr-deleted" and s.time < t for s in c.chain)


def csr_at(ledger: Ledger, name: str, t: int) -> Credential | None:
    """The CSR named ``name`` at time ``t``: the newest one that existed by then and was not deleted
    before it. A name is reused after deletion (csrcleaner removes decided CSRs after an hour), and
    files may be read out of order, so the newest CSR of that name is not necessarily this one."""
    cands = [c for c in ledger.by_lookup(f"csr:{name}")
             if (since := _since(c)) is not None and since <= t and not _deleted_before(c, t)]
    return max(cands, key=lambda c: (_since(c) or 0, c.id)) if cands else None


def _held_for(ledger: Ledger, name: str, t: int) -> Credential | None:
    """A decision or issuance read before its creation (files out of order) that this creation at ``t``
    explains: the held CSR's first step is at or after ``t`` and no other CSR of the name was created
    in between."""
    same = ledger.by_lookup(f"csr:{name}")
    held = [c for c in same if not _created(c) and (s := _since(c)) is not None and s >= t]
    for c in sorted(held, key=lambda c: (_since(c) or 0, c.id)):
        first = _since(c) or 0
        if not any(_created(o) and o.created_at is not None and t < o.created_at <= first for o in same):
            return c
    return None


def _csr_for(ledger: Ledger, record: Any) -> Credential:
    """The CSR an approval/status event is about (see ``csr_at``); else an unnamed create within the hour
    (probable); else a held one, which its creation adopts when it is read."""
    name = record.meta.name
    found = csr_at(ledger, name, record.time)
    if found is not None:
        return found
    # oldest first: approvers work through pending requests in order; a newer unnamed CSR must not take an
    # older one's approval
    unnamed = sorted((c for c in ledger.by_lookup(UNNAMED_CSR)
                      if c.created_at is not None and 0 <= record.time - c.created_at <= UNNAMED_WINDOW_NS),
                     key=lambda c: (c.created_at or 0, c.id))
    if unnamed:
        cred = unnamed[0]
        cred.lookup = f"csr:{name}"
        cred.details["csr_name"] = name
        cred.details["name_link"] = "probable"
        if len(unnamed) > 1:
            cred.details["name_candidates"] = len(unnamed)
        return cred
    cred = _new_csr(ledger, name, record)
    cred.status = ""
    cred.add_gap("csr-create-not-seen")
    return cred


def _conditions(event: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for field in ("responseObject", "requestObject"):
        conds = as_dict(as_dict(event.get(field)).get("status")).get("conditions")
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
        kind = c["type"].lower()
        earlier = [s for s in cred.chain if s.action in ("approved", "denied")]
        if earlier and (earlier[0].action != kind or earlier[0].by != user):
            # never overwrite a decision: a reused name or a file read out of order could put the wrong
            # name on the credential; keep the first and let the conflict be seen
            cred.chain.append(step_of(record, "decision-conflict", by=user, impersonator=imp, decision=kind,
                                      reason=c.get("reason"), message=c.get("message")))
            ledger.put(cred)
            return
        if kind == "approved":
            if not cred.approved_by:
                cred.approved_by, cred.approved_at = user, record.time
            if cred.status != "issued":
                cred.status = "approved"
        else:
            cred.denied_by = cred.denied_by or user
            cred.status = "denied"
        cred.chain.append(step_of(record, kind, by=user, impersonator=imp, reason=c.get("reason"),
                                  message=c.get("message")))
    ledger.put(cred)


def csr_status(ledger: Ledger, record: Any) -> None:
    ev = record.event()
    pem = None
    for field in ("responseObject", "requestObject"):
        v = as_dict(as_dict(ev.get(field)).get("status")).get("certificate")
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
