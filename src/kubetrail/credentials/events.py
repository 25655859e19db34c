"""Small readers of audit events shared by the credential modules (which stage counts, who acted)."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qs


def as_dict(v: Any) -> dict[str, Any]:
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


def dry_run(meta: Any) -> bool:
    """``?dryRun=All``: the apiserver ran admission and validation but persisted and issued nothing."""
    query = meta.request_uri.partition("?")[2]
    if "dryRun" not in query and "%" not in query:  # nothing to parse (the name may be percent-encoded)
        return False
    return any(v == "All" for v in parse_qs(query).get("dryRun", []))


@functools.lru_cache(maxsize=4096)  # every linked request asks; a cluster has few credentials in use at once
def normalise_credential_id(cid: str) -> str:
    """``X509SHA256=`` in lowercase hex without whitespace, ``JTI=`` trimmed: the spelling the inventory keeps."""
    kind, sep, value = cid.strip().partition("=")
    if not sep:
        return cid.strip()
    kind = kind.strip()
    if kind.upper() == "X509SHA256":
        return f"X509SHA256={''.join(value.split()).lower()}"
    if kind.upper() == "JTI":
        return f"JTI={value.strip()}"
    return f"{kind}={value.strip()}"


def acting(user: str, impersonator: str) -> str:
    """Who really acted: the authenticated user behind an impersonated request, else the user."""
    return impersonator or user


def as_seen(user: str, impersonator: str) -> str:
    """``alice (impersonating bob)`` for explanations; just ``bob`` without impersonation."""
    return f"{impersonator} (impersonating {user})" if impersonator else user
