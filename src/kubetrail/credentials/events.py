"""Small readers of audit events shared by the credential modules (which stage counts, who acted)."""

from __future__ import annotations

from typing import Any


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
