"""Pod request fields: ``ka.req.pod.<containers|initContainers|ephemeralContainers>.*``, volumes, and
the deprecated engine-v4 ``ka.req.container.*``/``ka.req.volume.hostpath[P]`` (reference §6.2).

Each container list is separate (``containers.*`` never includes init or ephemeral containers). An
index argument selects one container (or volume); out of range is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from kubetrail.detect.falco import jsonval
from kubetrail.detect.falco.context import MISSING, EventContext, Extracted, FieldSpec, get

_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _spec(c: EventContext) -> Any:
    return get(c.ev, "requestObject", "spec") if c.audit else MISSING


def _items(c: EventContext, key: str, arg: str | None) -> list[Any] | None:
    spec = _spec(c)
    items = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(items, list):
        return None
    if arg is not None:
        i = int(arg)
        return items[i : i + 1] or None
    return items


def repository(image: str, falco: bool) -> str:
    """Image repository: Falco cuts at the first ':' then '@'; kubetrail keeps registry ports."""
    if falco:
        return image.split(":", 1)[0].split("@", 1)[0]
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def _per_container(c: EventContext, arg: str | None, lst: str, kind: str, key: str, falco: bool) -> Extracted:
    items = _items(c, lst, arg)
    if items is None:
        return None
    out: list[str] = []
    for ct in items:
        if not isinstance(ct, dict):
            return None
        if kind == "required":  # name, image, image.repository: one container without it -> missing
            v = ct.get("image" if key == "repo" else key)
            if not isinstance(v, str):
                return None
            out.append(repository(v, falco) if key == "repo" else v)
        elif kind == "joined":
            v = ct.get(key)
            if isinstance(v, list):
                out.append(" ".join(jsonval.text_of(x) for x in v))
        elif kind == "secctx":
            v = get(ct, "securityContext", key)
            if v is not MISSING:
                out.append(jsonval.text_of(v))
        elif kind == "caps":
            v = get(ct, "securityContext", "capabilities", "add")
            if isinstance(v, list):
                out.extend(jsonval.text_of(x) for x in v)
        elif kind == "ports":
            for p in ct.get("ports") or []:
                if isinstance(p, dict):
                    v = p.get("hostPort", p.get("containerPort", MISSING))
                    if v is not MISSING:
                        out.append(jsonval.text_of(v))
        elif kind == "eff":
            spec = _spec(c)
            if falco:  # upstream reads runAsUser outside securityContext
                v = ct.get(key, get(spec, key))
            else:
                v = get(ct, "securityContext", key)
                if v is MISSING:
                    v = get(spec, "securityContext", key)
            out.append("0" if v is MISSING else jsonval.text_of(v))
    return out or None


_CONTAINER_FIELDS = (
    ("name", "required", "name", "container names"),
    ("image", "required", "image", "container images"),
    ("image.repository", "required", "repo", "container image repositories (without tag/digest)"),
    ("command", "joined", "command", "container commands, joined with spaces"),
    ("args", "joined", "args", "container args, joined with spaces"),
    ("privileged", "secctx", "privileged", "securityContext.privileged"),
    ("allow_privilege_escalation", "secctx", "allowPrivilegeEscalation", "securityContext.allowPrivilegeEscalation"),
    ("read_only_fs", "secctx", "readOnlyRootFilesystem", "securityContext.readOnlyRootFilesystem"),
    ("run_as_user", "secctx", "runAsUser", "securityContext.runAsUser"),
    ("run_as_group", "secctx", "runAsGroup", "securityContext.runAsGroup"),
    ("eff_run_as_user", "eff", "runAsUser", "effective runAsUser (container, else pod, else 0)"),
    ("eff_run_as_group", "eff", "runAsGroup", "effective runAsGroup (container, else pod, else 0)"),
    ("proc_mount", "secctx", "procMount", "securityContext.procMount"),
    ("add_capabilities", "caps", "add", "added capabilities"),
    ("host_port", "ports", "hostPort", "host ports (containerPort when no hostPort)"),
)


def _volumes(c: EventContext, arg: str | None, what: str) -> Extracted:
    items = _items(c, "volumes", arg)
    if items is None:
        return None
    out: list[str] = []
    for vol in items:
        if not isinstance(vol, dict):
            continue
        if what == "hostpath":
            v = get(vol, "hostPath", "path")
        elif what == "flex":
            v = get(vol, "flexVolume", "driver")
        else:
            out.extend(k for k in vol if k != "name")
            continue
        if isinstance(v, str):
            out.append(v)
    return out or None


def _volume_hostpath(c: EventContext, arg: str | None) -> Extracted:
    vols = _items(c, "volumes", None)
    if _spec(c) is MISSING:
        return None
    arg = arg or ""
    for vol in vols or []:
        path = get(vol, "hostPath", "path")
        if not isinstance(path, str):
            continue
        if path == arg or (arg.endswith("*") and path.startswith(arg[:-1])):
            return "true"
    return "false"


def _first_container(c: EventContext, _arg: str | None, what: str, falco: bool) -> Extracted:
    items = _items(c, "containers", None)
    if not items:
        return None
    if what == "privileged":
        return "true" if any(isinstance(ct, dict) and get(ct, "securityContext", "privileged") is True
                             for ct in items) else "false"
    image = items[0].get("image") if isinstance(items[0], dict) else None
    if not isinstance(image, str):
        return None
    return repository(image, falco) if what == "repo" else image


def register(add: Callable[[FieldSpec], None]) -> None:
    """Add every pod field to the catalog through ``add``."""
    for lst in _LISTS:
        for suffix, kind, key, desc in _CONTAINER_FIELDS:
            if suffix == "host_port" and lst == "ephemeralContainers":
                continue
            kw: dict[str, Any] = {"lst": lst, "kind": kind, "key": key}
            add(FieldSpec(f"ka.req.pod.{lst}.{suffix}", f"{desc} of spec.{lst}", is_list=True, arg="index",
                          extract=partial(_per_container, falco=False, **kw),
                          extract_falco=partial(_per_container, falco=True, **kw)))
    for suffix, what, desc in (("hostpath", "hostpath", "hostPath paths"), ("flexvolume_driver", "flex",
                               "flexVolume drivers"), ("volume_type", "type", "volume types")):
        add(FieldSpec(f"ka.req.pod.volumes.{suffix}", desc, partial(_volumes, what=what), is_list=True,
                      arg="index"))
    add(FieldSpec("ka.req.pod.supplemental_groups", "pod supplementalGroups", is_list=True,
                  extract=lambda c, a: (lambda v: [jsonval.text_of(x) for x in v] or None if isinstance(v, list)
                                        else None)(get(_spec(c), "securityContext", "supplementalGroups"))))
    add(FieldSpec("ka.req.volume.hostpath", "deprecated: 'true' if a hostPath volume matches the argument",
                  _volume_hostpath, arg="key", deprecated=True))
    for name, what in (("ka.req.container.image", "image"), ("ka.req.container.image.repository", "repo"),
                       ("ka.req.container.privileged", "privileged")):
        add(FieldSpec(name, f"deprecated: {what} of the first container", deprecated=True,
                      extract=partial(_first_container, what=what, falco=False),
                      extract_falco=partial(_first_container, what=what, falco=True)))
