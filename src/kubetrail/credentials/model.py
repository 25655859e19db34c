"""What the inventory knows about one credential, and the steps that prove it.

A ``Credential`` is stored as one JSON document (``credentials.doc``, format version ``DOC_VERSION``)
with a few indexed columns beside it (see migration 0004). Its ``chain`` is the creation story —
CSR created, approved, issued; TokenRequest; Secret created; deleted — each ``Step`` naming the
trail record (key, auditID, leaf index) that shows it. Uses are not in the document: they are rows
of ``credential_uses`` with per-credential totals in ``credential_aggregates`` (store.py).

IDs are readable and stable across ``creds rebuild`` (which replays the trail in the same order):

=================  ====================================================================
``csr/NAME``       certificate requested through the CSR API (``~2``, ``~3`` … if the name is reused)
``csr/?AUDITID8``  a CSR created with ``generateName`` whose name the audit level did not show
``x509/FP16``      a certificate seen only in use (``X509SHA256=``): issuance never seen
``jti/JTI``        a token with a JTI (TokenRequest with ``issued-credential-id``, or seen in use)
``token/NS/SA/ID`` a TokenRequest without a JTI (older clusters)
``legacy/NS/NAME`` a legacy service-account token Secret (NAME = the Secret, or the SA if unknown)
``bootstrap/ID``   a bootstrap token (``kube-system/bootstrap-token-ID``)
``unknown/USER``   an identity seen authenticating that no known credential explains
=================  ====================================================================
"""

from __future__ import annotations

from typing import Any

import msgspec

DOC_VERSION = 1
KINDS = ("cert", "token", "legacy", "bootstrap", "unknown")


class Step(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event in a credential's creation chain."""

    action: str  # csr-created, approved, denied, approval-unknown, issued, failed, token-requested, …
    by: str = ""
    time: int = 0
    key: str = ""
    audit_id: str = ""
    stage: str = ""
    leaf_index: int | None = None
    link: str = "exact"  # exact | probable (matched by name/time, not by an identifier)
    detail: dict[str, Any] = {}


class Credential(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    kind: str  # cert | token | legacy | bootstrap | unknown
    version: int = DOC_VERSION
    accounted: bool = False  # its issuance is in the trail
    status: str = ""  # pending | approved | denied | issued | failed | created | in-use | revoked
    subject: str = ""  # the username the credential authenticates as
    groups: list[str] = []
    credential_id: str = ""  # X509SHA256=… / JTI=… exactly as the apiserver writes it
    fingerprint: str = ""
    jti: str = ""
    lookup: str = ""  # csr:NAME | secret:NS/NAME | legacysa:NS/SA (finds the row for later events)
    created_by: str = ""
    created_by_groups: list[str] = []
    impersonator: str = ""  # the identity behind an impersonated request
    approved_by: str = ""
    denied_by: str = ""
    created_at: int | None = None
    approved_at: int | None = None
    issued_at: int | None = None
    not_before: int | None = None
    expires_at: int | None = None  # effective expiry (what the apiserver enforces)
    nominal_expires_at: int | None = None  # what the API reported (TokenRequest status)
    revoked_at: int | None = None
    details: dict[str, Any] = {}  # kind-specific: signer, usages, SANs, audiences, bound object …
    gaps: list[str] = []  # policy-gap codes (flags.GAPS explains them)
    chain: list[Step] = []

    def add_gap(self, code: str) -> None:
        if code not in self.gaps:
            self.gaps.append(code)

    def drop_gap(self, code: str) -> None:
        if code in self.gaps:
            self.gaps.remove(code)


class Flag(msgspec.Struct, kw_only=True):
    """A risk the inventory raises on a credential (kept in ``credential_flags``). ``alert``: an attack
    in progress, alerted once; otherwise a standing fact, shown in the inventory only."""

    flag: str
    priority: str  # Falco priority names
    explanation: str
    alert: bool = False
    time: int = 0
    key: str = ""
    audit_id: str = ""
    stage: str = ""
    leaf_index: int | None = None


def step_of(record: Any, action: str, by: str = "", link: str = "exact", **detail: Any) -> Step:
    """A chain step for one stored record."""
    m = record.meta
    return Step(action=action, by=by or m.user, time=record.time, key=record.key, audit_id=m.audit_id,
                stage=m.stage, leaf_index=record.leaf_index, link=link,
                detail={k: v for k, v in detail.items() if v not in (None, "", [], {})})


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Credential)


def encode(cred: Credential) -> bytes:
    return _encoder.encode(cred)


def decode(doc: bytes | str) -> Credential:
    return _decoder.decode(doc)
