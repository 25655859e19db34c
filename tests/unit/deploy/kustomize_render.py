"""A small kustomize renderer for the features deploy/kubernetes uses, so the tests need no kubectl:
``resources`` (files and directories holding a kustomization.yaml), ``patches`` (``path:`` to a
strategic-merge patch that names its target by kind/name/namespace) and ``images`` (name ->
newName/newTag/digest). Anything else in a kustomization is refused, so a manifest change that needs
more of kustomize fails loudly here instead of rendering wrong. When a kubectl with kustomize is on
PATH, test_kubernetes_manifests.py checks that both render the same objects.

Strategic merge follows the Kubernetes merge keys for the lists these manifests patch (containers,
volumes, volumeMounts, env, ports, tolerations...); other lists are replaced, as kustomize does for
lists without a merge key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}

# field name -> merge key, for lists of objects (k8s.io/api patchMergeKey tags)
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "volumeMounts": "mountPath", "volumeDevices": "devicePath", "env": "name", "ports": "containerPort",
    "imagePullSecrets": "name", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "volumeClaimTemplates": None,  # no merge key: replaced
}


class KustomizeError(Exception):
    pass


def _load_docs(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise KustomizeError(f"{path}: not a Kubernetes object: {str(d)[:80]}")
    return docs


def _identity(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], str(meta.get("namespace") or ""), str(meta["name"])


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of ``patch`` into ``base`` (both plain YAML data)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    key = MERGE_KEYS.get(field)
    if isinstance(base, list) and isinstance(patch, list) and key:
        out_list = [copy.deepcopy(x) for x in base]
        added = []  # items only in the patch go first, in patch order (as kustomize's kyaml does)
        for item in patch:
            at = next((i for i, b in enumerate(out_list) if isinstance(b, dict) and isinstance(item, dict)
                       and key in item and b.get(key) == item[key]), None)
            if at is None:
                added.append(copy.deepcopy(item))
            else:
                out_list[at] = merge(out_list[at], item, field)
        return added + out_list
    return copy.deepcopy(patch)


def _set_images(node: Any, images: list[Obj]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "image" and isinstance(v, str):
                out[k] = _image(v, images)
            else:
                out[k] = _set_images(v, images)
        return out
    if isinstance(node, list):
        return [_set_images(x, images) for x in node]
    return node


def _image(ref: str, images: list[Obj]) -> str:
    name, tag, digest = ref, "", ""
    if "@" in name:
        name, digest = name.split("@", 1)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    for rule in images:
        if rule["name"] == name:
            name = rule.get("newName", name)
            if "digest" in rule:
                return f"{name}@{rule['digest']}"
            tag = str(rule.get("newTag", tag))
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize DIRECTORY`` would print (order: resources as listed)."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: fields this renderer does not implement: {sorted(unknown)}")
    objs: list[Obj] = []
    for res in spec.get("resources") or []:
        target = (directory / res).resolve()
        objs.extend(render(target) if target.is_dir() else _load_docs(target))
    seen = [_identity(o) for o in objs]
    if len(seen) != len(set(seen)):
        raise KustomizeError(f"{directory}: duplicate objects {sorted(x for x in seen if seen.count(x) > 1)}")
    for p in spec.get("patches") or []:
        if set(p) != {"path"}:
            raise KustomizeError(f"{kfile}: only `patches: - path: FILE` is implemented, not {p}")
        for patch in _load_docs(directory / p["path"]):
            ident = _identity(patch)
            at = next((i for i, o in enumerate(objs) if _identity(o) == ident), None)
            if at is None:
                raise KustomizeError(f"{directory / p['path']}: patch target {ident} not found")
            objs[at] = merge(objs[at], patch)
    images = spec.get("images") or []
    return [_set_images(o, images) for o in objs] if images else objs
