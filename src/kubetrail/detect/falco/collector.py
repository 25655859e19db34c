"""Turn the YAML items of rules files into list/macro/rule definitions (Falco's rule_loader collector).

Dispatch, define/redefine, ``append: true`` and ``override:`` follow reference §1: a redefinition
keeps the original position in the evaluation order; appends and rule replaces need an earlier
definition. Unlike Falco, which stops a file at its first error, every item is checked and every
problem is kept, each with ``file:line:col``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubetrail.detect.falco.yamlsrc import Node, Pos, parse_bool

ENGINE_VERSION = (0, 43, 0)
# kubetrail implements the k8saudit 0.18.0 and json 0.7.4 field catalogs and decodes the GKE/EKS/AKS
# delivery formats itself, so it answers for the managed-cluster plugins too (their fields are k8saudit's).
PLUGIN_VERSIONS = {"k8saudit": (0, 18, 0), "json": (0, 7, 4), "k8saudit-gke": (0, 9, 0), "k8saudit-eks": (0, 12, 0),
                   "k8saudit-aks": (0, 6, 0), "k8saudit-ovh": (0, 6, 0)}
PRIORITIES = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG")
PRIORITY_NAMES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
EXCEPTION_OPS = {"=", "==", "!=", "<", "<=", ">", ">=", "contains", "icontains", "bcontains", "startswith",
                 "bstartswith", "endswith", "glob", "iglob", "regex", "in", "intersects", "pmatch"}
_LIST_NAME = re.compile(r"[^()\"'\s=,]+")
_IDENT = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:[-+].*)?")
_RULE_APPEND = {"condition", "output", "desc", "tags", "exceptions"}
_RULE_REPLACE = _RULE_APPEND | {"priority", "enabled", "warn_evttypes", "skip-if-unknown-filter", "capture",
                                "capture_duration"}
_RULE_KEYS = _RULE_REPLACE | {"rule", "source", "override", "append", "required_engine_version"}


def parse_priority(text: str) -> int | None:
    """Index into PRIORITIES (0 = most severe); ``INFO`` is INFORMATIONAL; case-insensitive."""
    up = text.strip().upper()
    if up == "INFO":
        up = "INFORMATIONAL"
    return PRIORITIES.index(up) if up in PRIORITIES else None


@dataclass
class Diagnostic:
    pos: Pos | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.pos}: {self.severity}: {self.message}" if self.pos else f"{self.severity}: {self.message}"


@dataclass
class ListDef:
    name: str
    items: list[str]
    index: int
    visibility: int
    pos: Pos
    used: bool = False


@dataclass
class MacroDef:
    name: str
    condition: str
    index: int
    visibility: int
    pos: Pos
    used: bool = False


@dataclass
class ExceptionDef:
    name: str
    fields: str | list[str] | None
    comps: str | list[str] | None
    values: list[Any]  # str | list[str] per value (scalar form), or list of tuples (list form)
    pos: Pos


@dataclass
class RuleDef:
    name: str
    desc: str
    condition: str
    output: str
    priority: int
    source: str
    enabled: bool
    tags: list[str]
    exceptions: list[ExceptionDef]
    index: int
    pos: Pos
    skip_unknown: bool = False


def _semver(text: str) -> tuple[int, int, int] | None:
    m = _SEMVER.fullmatch(text.strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _vstr(v: tuple[int, int, int]) -> str:
    return ".".join(map(str, v))


class ItemError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


@dataclass
class Collector:
    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    rules: dict[str, RuleDef] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seq: int = 0

    def warn(self, pos: Pos | None, message: str) -> None:
        self.diagnostics.append(Diagnostic(pos, message, "warning"))

    def error(self, pos: Pos | None, message: str) -> None:
        self.diagnostics.append(Diagnostic(pos, message, "error"))

    # -- entry points ----------------------------------------------------------------------------
    def add_document(self, doc: Node | None) -> None:
        if doc is None:
            return
        if not doc.is_seq:
            self.error(doc.pos, "Rules content is not yaml array of objects")
            return
        for item in doc.value:  # type: ignore[union-attr]
            if item.value is None:
                continue
            self.seq += 1
            try:
                self.add_item(item)
            except ItemError as exc:
                self.error(exc.pos, exc.message)

    def add_item(self, item: Node) -> None:
        if not item.is_map:
            raise ItemError(item.pos, "Unexpected element type. Each element should be a yaml associative array.")
        m: dict[str, Node] = item.value  # type: ignore[assignment]
        for key, handler in (("required_engine_version", self._engine_version),
                             ("required_plugin_versions", self._plugin_versions), ("list", self._list),
                             ("macro", self._macro), ("rule", self._rule)):
            if key in m:
                handler(item, m)
                return
        self.warn(item.pos, "Unknown top level item")

    # -- helpers ---------------------------------------------------------------------------------
    def _text(self, item: Node, m: dict[str, Node], key: str, *, required: bool = True,
              empty_ok: bool = False) -> str | None:
        node = m.get(key)
        if node is None:
            if required:
                raise ItemError(item.pos, f"Item has no mapping for key '{key}'")
            return None
        if node.value is None:
            if empty_ok:
                return ""
            raise ItemError(node.pos, f"Value for key '{key}' must be non-empty")
        if not node.is_str:
            raise ItemError(node.pos, f"Value for key '{key}' must be a scalar")
        text: str = node.value  # type: ignore[assignment]
        if not text and not empty_ok:
            raise ItemError(node.pos, f"Value for key '{key}' must be non-empty")
        return text

    def _bool(self, m: dict[str, Node], key: str) -> bool | None:
        node = m.get(key)
        if node is None:
            return None
        b = parse_bool(node.value) if node.is_str else None  # type: ignore[arg-type]
        if b is None:
            raise ItemError(node.pos, f"Value for key '{key}' must be a boolean")
        return b

    def _unknown_keys(self, item: Node, m: dict[str, Node], known: set[str]) -> None:
        for key in m:
            if key not in known:
                self.warn(item.key_pos.get(key, item.pos), f"Unknown key '{key}'. The key will be ignored.")

    def _override(self, item: Node, m: dict[str, Node], allowed: dict[str, set[str]]) -> dict[str, str]:
        node = m["override"]
        if not node.is_map:
            raise ItemError(node.pos, "Value for key 'override' must be a mapping")
        if "append" in m:
            raise ItemError(node.pos, "Keys 'override' and 'append: true' cannot be used together. "
                                      "Add an 'append' entry (e.g. 'condition: append') under 'override' instead.")
        ops: dict[str, str] = {}
        for key, vnode in node.value.items():  # type: ignore[union-attr]
            op = vnode.value if vnode.is_str else None
            ok = {o for o, keys in allowed.items() if key in keys}
            if op not in ("append", "replace") or op not in ok:
                choices = " or ".join(sorted(ok)) or "nothing"
                raise ItemError(vnode.pos, f"Key '{key}' cannot be overridden with '{op}' (allowed: {choices})")
            if key not in m:
                raise ItemError(vnode.pos, f"An override is defined for '{key}' but '{key}' is not present")
            ops[key] = op  # type: ignore[assignment]
        overridable = set().union(*allowed.values())
        for key in m:
            if key in overridable and key not in ops:
                raise ItemError(item.key_pos.get(key, item.pos),
                                f"Unexpected key '{key}': no corresponding entry under 'override' is defined.")
        return ops

    # -- versions --------------------------------------------------------------------------------
    def _engine_version(self, item: Node, m: dict[str, Node]) -> None:
        text = self._text(item, m, "required_engine_version") or ""
        req = (0, int(text), 0) if text.strip().isdigit() else _semver(text)
        if req is None:
            raise ItemError(m["required_engine_version"].pos, f"Unable to parse engine version '{text}'")
        if req[0] != ENGINE_VERSION[0] or req > ENGINE_VERSION:
            raise ItemError(item.pos, f"Rules require engine version {_vstr(req)}, "
                                      f"but engine version is {_vstr(ENGINE_VERSION)}")

    def _plugin_versions(self, item: Node, m: dict[str, Node]) -> None:
        node = m["required_plugin_versions"]
        if not node.is_seq:
            raise ItemError(node.pos, "Value of required_plugin_versions must be a sequence")
        for entry in node.value:  # type: ignore[union-attr]
            if not entry.is_map:
                raise ItemError(entry.pos, "required_plugin_versions entries must be mappings")
            group = [entry] + (entry.value.get("alternatives").value or []  # type: ignore[union-attr]
                               if "alternatives" in entry.value else [])  # type: ignore[operator]
            seen: set[str] = set()
            wanted: list[str] = []
            satisfied = False
            for alt in group:
                am: dict[str, Node] = alt.value if alt.is_map else {}  # type: ignore[assignment]
                name = self._text(alt, am, "name") or ""
                vtext = self._text(alt, am, "version") or ""
                ver = _semver(vtext)
                if ver is None:
                    raise ItemError(am["version"].pos, f"Plugin version string {vtext} is not valid")
                if name in seen:
                    raise ItemError(alt.pos, f"Duplicate plugin name '{name}' in alternatives")
                seen.add(name)
                wanted.append(f"{name} (>= {vtext})")
                have = PLUGIN_VERSIONS.get(name)
                if have is not None and have[0] == ver[0] and have >= ver:
                    satisfied = True
            if not satisfied:
                raise ItemError(entry.pos, "Plugin requirement not satisfied, must load one of: " + ", ".join(wanted))

    # -- lists and macros ------------------------------------------------------------------------
    def _list(self, item: Node, m: dict[str, Node]) -> None:
        name = self._text(item, m, "list") or ""
        self._unknown_keys(item, m, {"list", "items", "append", "override"})
        if not _LIST_NAME.fullmatch(name):
            self.warn(item.pos, f"List name '{name}' is not a valid bare string; it can never be referenced")
        inode = m.get("items")
        if inode is None:
            raise ItemError(item.pos, "Item has no mapping for key 'items'")
        raw = inode.value if inode.value is not None else []
        if not isinstance(raw, list) or any(not n.is_str for n in raw):
            raise ItemError(inode.pos, "List items must be a sequence of scalars")
        items = [n.value for n in raw]
        op = self._override(item, m, {"append": {"items"}, "replace": {"items"}}).get("items") \
            if "override" in m else ("append" if self._bool(m, "append") else None)
        if "append" in m:
            self.warn(item.key_pos.get("append"), "The 'append' key is deprecated; use 'override: {items: append}'")
        prev = self.lists.get(name)
        if op == "append":
            if prev is None:
                raise ItemError(item.pos, "List uses 'append' or 'override.items: append' but no list by that "
                                          "name already exists")
            prev.items.extend(items)  # type: ignore[arg-type]
            prev.visibility = self.seq
        elif prev is not None:
            prev.items = items  # type: ignore[assignment]
            prev.visibility = self.seq
        else:
            self.lists[name] = ListDef(name, items, self.seq, self.seq, item.pos)  # type: ignore[arg-type]

    def _macro(self, item: Node, m: dict[str, Node]) -> None:
        name = self._text(item, m, "macro") or ""
        self._unknown_keys(item, m, {"macro", "condition", "append", "override"})
        if not _IDENT.fullmatch(name):
            self.warn(item.pos, f"Macro name '{name}' is not an identifier; it can never be referenced")
        cond = self._text(item, m, "condition") or ""
        op = self._override(item, m, {"append": {"condition"}, "replace": {"condition"}}).get("condition") \
            if "override" in m else ("append" if self._bool(m, "append") else None)
        prev = self.macros.get(name)
        if op == "append":
            if prev is None:
                raise ItemError(item.pos, "Macro uses 'append' or 'override.condition: append' but no macro by "
                                          "that name already exists")
            prev.condition = prev.condition + " " + cond
            prev.visibility = self.seq
        elif prev is not None:
            prev.condition, prev.pos, prev.visibility = cond, m["condition"].pos, self.seq
        else:
            self.macros[name] = MacroDef(name, cond, self.seq, self.seq, m["condition"].pos)

    # -- rules -----------------------------------------------------------------------------------
    def _rule(self, item: Node, m: dict[str, Node]) -> None:
        from kubetrail.detect.falco.rulecollect import collect_rule

        collect_rule(self, item, m)
