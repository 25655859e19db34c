"""The ``- rule:`` item: define, redefine, toggle (``enabled`` only), ``append: true`` and ``override:``,
and the validation of ``exceptions`` (reference §1.6, §1.8, §1.9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetrail.detect.falco.collector import (
    _RULE_APPEND,
    _RULE_KEYS,
    _RULE_REPLACE,
    EXCEPTION_OPS,
    ExceptionDef,
    ItemError,
    RuleDef,
    parse_priority,
)
from kubetrail.detect.falco.yamlsrc import Node

if TYPE_CHECKING:
    from kubetrail.detect.falco.collector import Collector

_CORE = ("condition", "output", "desc", "priority")


def _tags(node: Node) -> list[str]:
    if node.value is None:
        return []
    if not node.is_seq or any(not n.is_str for n in node.value):  # type: ignore[union-attr]
        raise ItemError(node.pos, "Value for key 'tags' must be a sequence of strings")
    return [n.value for n in node.value]  # type: ignore[union-attr, misc]


def _scalar_or_list(node: Node, what: str) -> str | list[str]:
    if node.is_str:
        return node.value  # type: ignore[return-value]
    if node.is_seq and all(n.is_str for n in node.value):  # type: ignore[union-attr]
        return [n.value for n in node.value]  # type: ignore[union-attr, misc]
    raise ItemError(node.pos, f"Exception {what} must be a string or a sequence of strings")


def _exceptions(node: Node, source: str, *, new_required: bool = True) -> list[ExceptionDef]:
    from kubetrail.detect.falco.fields import FIELDS

    if node.value is None:
        return []
    if not node.is_seq:
        raise ItemError(node.pos, "Rule exceptions must be a sequence")
    out: list[ExceptionDef] = []
    for ex in node.value:  # type: ignore[union-attr]
        if not ex.is_map:
            raise ItemError(ex.pos, "Rule exception must be a mapping")
        em: dict[str, Node] = ex.value  # type: ignore[assignment]
        if "name" not in em or not em["name"].is_str or not em["name"].value:
            raise ItemError(ex.pos, "Item has no mapping for key 'name'")
        name: str = em["name"].value  # type: ignore[assignment]
        fields = _scalar_or_list(em["fields"], "fields") if "fields" in em else None
        comps = _scalar_or_list(em["comps"], "comps") if "comps" in em else None
        if isinstance(comps, str):
            comps = comps.strip()
        elif comps is not None:
            comps = [c.strip() for c in comps]
        values: list[Any] = []
        vnode = em.get("values")
        if vnode is not None and vnode.value is not None:
            if not vnode.is_seq:
                raise ItemError(vnode.pos, "Exception values must be a sequence")
            for v in vnode.value:  # type: ignore[union-attr]
                values.append(_value(v))
        if fields is not None:
            _check_exception(ex.pos, name, fields, comps, values, source, FIELDS)
        out.append(ExceptionDef(name, fields, comps, values, ex.pos))
    return out


def _value(v: Node) -> Any:
    if v.is_str:
        return v.value
    if v.value is None:
        return ""
    if v.is_seq:
        return [_value(x) for x in v.value]  # type: ignore[union-attr]
    raise ItemError(v.pos, "Exception values must be strings or sequences")


def _check_exception(pos: Any, name: str, fields: str | list[str], comps: str | list[str] | None,
                     values: list[Any], source: str, catalog: dict[str, Any]) -> None:
    if isinstance(fields, list):
        if comps is not None and (not isinstance(comps, list) or len(comps) != len(fields)):
            raise ItemError(pos, f"Exception '{name}': fields and comps lists must have equal length")
        for c in comps or []:
            if c not in EXCEPTION_OPS:
                raise ItemError(pos, f"Exception '{name}': '{c}' is not a supported comparison operator")
        for tup in values:
            if not isinstance(tup, list) or len(tup) != len(fields):
                raise ItemError(pos, f"Exception '{name}': Fields and values lists must have equal length")
        names = fields
    else:
        if comps is not None and (not isinstance(comps, str) or comps not in ("in", "pmatch", "intersects")):
            raise ItemError(pos, f"Exception '{name}': comps for a single field must be in, pmatch or intersects")
        if any(not isinstance(v, str) for v in values):
            raise ItemError(pos, f"Exception '{name}': values for a single field must be scalars")
        names = [fields]
    if source == "k8s_audit":
        for f in names:
            if f.split("[", 1)[0] not in catalog:
                raise ItemError(pos, f"Exception '{name}': '{f}' is not a supported filter field")


def _merge_exceptions(rule: RuleDef, new: list[ExceptionDef]) -> None:
    by_name = {e.name: e for e in rule.exceptions}
    for ex in new:
        old = by_name.get(ex.name)
        if old is not None:
            if ex.fields is not None or ex.comps is not None:
                raise ItemError(ex.pos, f"Can not append exception fields or comps to existing exception "
                                        f"'{ex.name}', only values")
            old.values.extend(ex.values)
        else:
            if ex.fields is None:
                raise ItemError(ex.pos, f"Rule exception new item {ex.name}: must have fields property with a "
                                        "list of fields")
            rule.exceptions.append(ex)
            by_name[ex.name] = ex


def collect_rule(col: Collector, item: Node, m: dict[str, Node]) -> None:
    name = col._text(item, m, "rule") or ""
    col._unknown_keys(item, m, _RULE_KEYS)
    prev = col.rules.get(name)
    if "override" in m:
        ops = col._override(item, m, {"append": _RULE_APPEND, "replace": _RULE_REPLACE})
        for key, op in ops.items():
            if prev is None:
                if op == "append":
                    raise ItemError(item.pos, f"Rule uses 'append' or 'override.{key}: append' but no rule by that "
                                              "name already exists")
                raise ItemError(item.pos, f"An 'override.{key}: replace' to a rule was requested but no rule by "
                                          "that name already exists")
        assert prev is not None or not ops
        for key, op in ops.items():
            _apply(col, prev, m, key, op)  # type: ignore[arg-type]
        return
    if col._bool(m, "append"):
        col.warn(item.key_pos.get("append"), "The 'append' key is deprecated; use 'override:' instead")
        if prev is None:
            raise ItemError(item.pos, "Rule uses 'append' or 'override.<key>: append' but no rule by that name "
                                      "already exists")
        if "condition" not in m and "exceptions" not in m:
            raise ItemError(item.pos, "Appended rule must have exceptions or condition property")
        if "condition" in m:
            prev.condition += " " + (col._text(item, m, "condition") or "")
        if "exceptions" in m:
            _merge_exceptions(prev, _exceptions(m["exceptions"], prev.source))
        return
    if not any(k in m for k in _CORE):
        if "enabled" not in m:
            raise ItemError(item.pos, "Item has no mapping for key 'condition'")
        if prev is None:
            raise ItemError(item.pos, "Rule has 'enabled' key but no rule by that name already exists")
        col.warn(item.pos, "Using 'enabled' alone to toggle a rule is deprecated; use 'override: {enabled: "
                           "replace}'")
        prev.enabled = bool(col._bool(m, "enabled"))
        return
    _define(col, item, m, name, prev)


def _define(col: Collector, item: Node, m: dict[str, Node], name: str, prev: RuleDef | None) -> None:
    cond = col._text(item, m, "condition") or ""
    output = (col._text(item, m, "output") or "").strip()
    desc = col._text(item, m, "desc") or ""
    ptext = col._text(item, m, "priority") or ""
    prio = parse_priority(ptext)
    if prio is None:
        raise ItemError(m["priority"].pos, f"Invalid priority level: {ptext}")
    source_text = col._text(item, m, "source", required=False, empty_ok=True)
    source = source_text or (prev.source if prev is not None and source_text == "" else "syscall")
    enabled = col._bool(m, "enabled")
    tags = _tags(m["tags"]) if "tags" in m else []
    exceptions = _exceptions(m["exceptions"], source) if "exceptions" in m else []
    names = [e.name for e in exceptions]
    for dup in {n for n in names if names.count(n) > 1}:
        col.warn(m["exceptions"].pos, f"Multiple definitions of exception '{dup}' in the same rule")
    skip = bool(col._bool(m, "skip-if-unknown-filter"))
    for key in ("warn_evttypes", "capture"):
        col._bool(m, key)
    if prev is not None:
        if prev.source != source:
            raise ItemError(item.pos, "Rule has been re-defined with a different source")
        index = prev.index
    else:
        index = col.seq
    col.rules[name] = RuleDef(name, desc, cond, output, prio, source, True if enabled is None else enabled,
                              list(dict.fromkeys(tags)), exceptions, index, m["condition"].pos, skip)


def _apply(col: Collector, rule: RuleDef, m: dict[str, Node], key: str, op: str) -> None:
    node = m[key]
    if key == "exceptions":
        new = _exceptions(node, rule.source)
        if op == "append":
            _merge_exceptions(rule, new)
        else:
            rule.exceptions = new
    elif key == "tags":
        tags = _tags(node)
        rule.tags = list(dict.fromkeys(rule.tags + tags)) if op == "append" else tags
    elif key in ("condition", "output", "desc"):
        text = node.value if node.is_str else ""
        if not isinstance(text, str) or not text:
            raise ItemError(node.pos, f"Value for key '{key}' must be non-empty")
        if key == "output":
            text = text.strip()
        if op == "append":
            setattr(rule, key, getattr(rule, key) + " " + text)
        else:
            setattr(rule, key, text)
        if key == "condition":
            rule.pos = node.pos
    elif key == "priority":
        prio = parse_priority(node.value if node.is_str else "")  # type: ignore[arg-type]
        if prio is None:
            raise ItemError(node.pos, f"Invalid priority level: {node.value}")
        rule.priority = prio
    elif key == "enabled":
        rule.enabled = bool(col._bool(m, "enabled"))
    elif key == "skip-if-unknown-filter":
        rule.skip_unknown = bool(col._bool(m, key))
