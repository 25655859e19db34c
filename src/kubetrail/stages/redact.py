"""Remove secrets from an audit event before anything is written anywhere.

Whatever the audit policy logged, these never leave this stage:

* Secret ``data``/``stringData`` values in request and response objects, in lists of Secrets, in
  patches of Secrets, and in the ``kubectl.kubernetes.io/last-applied-configuration`` annotation
  of a Secret (which repeats the data in clear).
* Bootstrap-token secrets (they are Secrets: same rule), with one exception: in a Secret of type
  ``bootstrap.kubernetes.io/token`` only ``token-secret`` (and any key kubetrail does not know) is
  secret. ``token-id`` is public (it is the user name ``system:bootstrap:<id>``), and ``expiration``,
  ``usage-bootstrap-*``, ``auth-extra-groups`` and ``description`` are what the credential
  inventory needs to say what the token grants and when it dies, so they are kept.
* The issued token in a TokenRequest response (``status.token``) and the token under review in a
  TokenReview (``spec.token``). The JWT's decoded claims (``jti``, ``exp``, ``iat``, ``nbf``, ``sub``,
  ``aud``, ``iss``, ``kubernetes.io``) are kept, because credential tracking needs them and they are
  not a secret: they go to the annotation ``kubetrail.dev/token-claims`` (a JSON string, as all
  audit annotations are strings).
* Any JWT-shaped string and any PEM private key block anywhere else in the event (request URIs,
  ConfigMaps, env vars …).
* Whatever shape the Secret arrives in: JSON Patch operations (every ``value``; ``op`` and ``path``
  are kept), a patch body the apiserver logged as text, ``Table`` rows (``kubectl get`` with
  ``includeObject``), lists and metadata-only lists (the last-applied annotation).

Each removal is listed as a ``Redaction`` with its JSON path and a 12-hex-digit SHA-256 prefix, so
an analyst can still see that two events carried the same value.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import orjson

from kubetrail.record import Redaction

REDACTED = "[redacted]"
CLAIMS_ANNOTATION = "kubetrail.dev/token-claims"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_KEPT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "kubernetes.io")
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_PUBLIC_KEYS = frozenset({"token-id", "expiration", "usage-bootstrap-authentication",
                                   "usage-bootstrap-signing", "auth-extra-groups", "description"})
_JWT_BYTES_RE = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.|PRIVATE KEY-----")
PEM_KEY_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S)


def _digest(value: Any) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, without verifying it (we only describe, never trust, the token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    return {k: claims[k] for k in _KEPT_CLAIMS if k in claims}


class _Redactor:
    def __init__(self) -> None:
        self.found: list[Redaction] = []

    def drop(self, path: str, value: Any, what: str) -> str:
        self.found.append(Redaction(path, _digest(value), what))
        return REDACTED

    def secret(self, obj: Any, path: str) -> None:
        """Scrub one Secret object (or a patch of one, or a list or table of them)."""
        if isinstance(obj, list):  # JSON Patch: [{"op": "add", "path": "/data/pw", "value": …}, …]
            for i, op in enumerate(obj):
                if isinstance(op, dict) and "value" in op and op["value"] != REDACTED:
                    op["value"] = self.drop(f"{path}[{i}].value", orjson.dumps(op["value"]), "secret-data")
                elif not isinstance(op, dict):
                    obj[i] = self.drop(f"{path}[{i}]", orjson.dumps(op), "secret-data")
            return
        if not isinstance(obj, dict):
            return
        items = obj.get("items")
        if isinstance(items, list):
            for i, item in enumerate(items):
                self.secret(item, f"{path}.items[{i}]")
        rows = obj.get("rows") if obj.get("kind") == "Table" else None
        if isinstance(rows, list):
            for i, row in enumerate(rows):
                if isinstance(row, dict) and isinstance(row.get("object"), dict):
                    self.secret(row["object"], f"{path}.rows[{i}].object")
        public = BOOTSTRAP_PUBLIC_KEYS if obj.get("type") == BOOTSTRAP_TYPE else frozenset()
        for field in ("data", "stringData"):
            data = obj.get(field)
            if isinstance(data, dict):
                for k, v in data.items():
                    if v != REDACTED and k not in public:
                        data[k] = self.drop(f"{path}.{field}.{k}", v, "secret-data")
            elif isinstance(data, str | list) and data:
                obj[field] = self.drop(f"{path}.{field}", data, "secret-data")
        meta = obj.get("metadata")
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(ann, dict) and isinstance(ann.get(LAST_APPLIED), str):
            ann[LAST_APPLIED] = self.drop(f"{path}.metadata.annotations.{LAST_APPLIED}", ann[LAST_APPLIED],
                                          "secret-last-applied")

    def token(self, obj: Any, field_path: tuple[str, ...], path: str, event: dict[str, Any]) -> None:
        cur = obj
        for part in field_path[:-1]:
            cur = cur.get(part) if isinstance(cur, dict) else None
        last = field_path[-1]
        if not isinstance(cur, dict) or not isinstance(cur.get(last), str) or cur[last] == REDACTED:
            return
        token = cur[last]
        claims = decode_jwt_claims(token)
        if claims is not None:
            ann = event.get("annotations")
            if not isinstance(ann, dict):
                ann = event["annotations"] = {}
            ann[CLAIMS_ANNOTATION] = orjson.dumps(claims, option=orjson.OPT_SORT_KEYS).decode()
        cur[last] = self.drop(f"{path}.{'.'.join(field_path)}", token, "token")

    def jwts(self, node: Any, path: str) -> Any:
        """Replace JWT-shaped substrings and PEM private keys anywhere below ``node``; returns the new node."""
        if isinstance(node, str):
            if "eyJ" in node:
                for m in JWT_RE.finditer(node):
                    self.found.append(Redaction(path, _digest(m.group(0)), "jwt"))
                node = JWT_RE.sub(REDACTED, node)
            if "PRIVATE KEY-----" in node:
                for m in PEM_KEY_RE.finditer(node):
                    self.found.append(Redaction(path, _digest(m.group(0)), "private-key"))
                node = PEM_KEY_RE.sub(REDACTED, node)
            return node
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str | dict | list):
                    node[k] = self.jwts(v, f"{path}.{k}" if path else k)
            return node
        if isinstance(node, list):
            for i, v in enumerate(node):
                node[i] = self.jwts(v, f"{path}[{i}]")
        return node


def _is_secret_request(event: dict[str, Any]) -> bool:
    ref = event.get("objectRef")
    return isinstance(ref, dict) and ref.get("resource") == "secrets" and not ref.get("apiGroup")


def _secret_objects(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    kind = obj.get("kind")
    if kind == "Table":
        rows = obj.get("rows")
        return isinstance(rows, list) and any(isinstance(r, dict) and _secret_objects(r.get("object"))
                                              for r in rows)
    return kind in ("Secret", "SecretList")


def contains_jwt(raw: bytes) -> bool:
    """Whether the serialised event needs the walk over every string (a JWT or a private key)."""
    return _JWT_BYTES_RE.search(raw) is not None


def redact_event(event: dict[str, Any], scan_jwts: bool = True) -> list[Redaction]:
    """Scrub ``event`` in place. ``scan_jwts=False`` skips the walk over every string, for callers
    that have already checked the serialised event with ``contains_jwt`` (the hot path)."""
    r = _Redactor()
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    resource = ref.get("resource")
    secretish = _is_secret_request(event)
    for field in ("requestObject", "responseObject"):
        obj = event.get(field)
        if obj is None:
            continue
        if secretish and isinstance(obj, str | int | float | bool) and obj != REDACTED:
            event[field] = r.drop(field, obj, "secret-data")  # a patch logged as raw text
        elif secretish or _secret_objects(obj):
            r.secret(obj, field)
        elif isinstance(obj, dict) and isinstance(obj.get("items"), list):
            for i, item in enumerate(obj["items"]):
                if _secret_objects(item):
                    r.secret(item, f"{field}.items[{i}]")
    if resource == "serviceaccounts" and ref.get("subresource") == "token":
        r.token(event.get("responseObject"), ("status", "token"), "responseObject", event)
    if resource == "tokenreviews":
        for field in ("requestObject", "responseObject"):
            r.token(event.get(field), ("spec", "token"), field, event)
    if scan_jwts:
        claims = (event.get("annotations") or {}).get(CLAIMS_ANNOTATION)
        r.jwts(event, "")
        if claims is not None:
            event["annotations"][CLAIMS_ANNOTATION] = claims
    return r.found
