"""Load Falco rules files into compiled rules: YAML -> definitions -> text rewriting -> AST -> closures.

The order is Falco's (reference §2): exceptions become condition **text**, then every list is
substituted **textually** into every condition (so a list may be used before it is defined, and an
undefined list name stays a literal string), then the text is parsed, macros are substituted as
AST nodes (inside a macro only macros defined before its latest definition are visible; inside a
rule all are), and the tree is compiled against the field catalog for ``source: k8s_audit``.
Rules of other sources are skipped with one warning per file and source.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field

from kubetrail.detect.falco import ast
from kubetrail.detect.falco.collector import Collector, Diagnostic, ExceptionDef, MacroDef, RuleDef
from kubetrail.detect.falco.compiler import CompileError, Compiler, Pred, value_sets
from kubetrail.detect.falco.lexer import ConditionSyntaxError
from kubetrail.detect.falco.output import Formatter, compile_output
from kubetrail.detect.falco.parser import parse_condition
from kubetrail.detect.falco.yamlsrc import Node, Pos, YamlError, load_documents

SOURCE = "k8s_audit"
_DELIMS = " \t\n\r(),="
_BLANKS = " \t\n\r"
_LIST_OPS = ("in", "intersects", "pmatch")
_YAML_CACHE: dict[tuple[str, float, int], list[Node | None]] = {}


@dataclass
class CompiledRule:
    """One runnable rule. ``verbs``/``resources`` are None when the rule can match any value."""

    name: str
    desc: str
    priority: int
    source: str
    enabled: bool
    tags: tuple[str, ...]
    condition: Pred
    output: Formatter
    tree: ast.Node
    index: int
    pos: Pos
    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None


@dataclass
class Loaded:
    rules: list[CompiledRule]
    diagnostics: list[Diagnostic]
    counts: dict[str, int] = field(default_factory=dict)


def _quote(v: str) -> str:
    return f'"{v}"' if " " in v and not v.startswith(('"', "'")) else v


def substitute_list(cond: str, name: str, items: list[str]) -> tuple[str, bool]:
    """Falco's ``resolve_list``: replace whole-word uses of ``name`` by its items."""
    used = False
    start = cond.find(name)
    while start >= 0:
        end = start + len(name)
        if (start == 0 or cond[start - 1] in _DELIMS) and (end >= len(cond) or cond[end] in _DELIMS):
            while start > 0 and cond[start - 1] in _BLANKS:
                start -= 1
            while end < len(cond) and cond[end] in _BLANKS:
                end += 1
            sub = ", ".join(_quote(v) for v in items)
            if not sub:
                if start > 0 and cond[start - 1] == ",":
                    start -= 1
                elif end < len(cond) and cond[end] == ",":
                    end += 1
            prefix = cond[:start] + " " if start > 0 else ""
            cond = prefix + sub + " " + cond[end:]
            start = len(prefix) + len(sub)
            used = True
        start = cond.find(name, start + 1)
    return cond, used


def exceptions_text(cond: str, exceptions: list[ExceptionDef]) -> str:
    """Append ``and not (...)`` for each exception with values, exactly as Falco builds the text."""
    if not exceptions:
        return cond
    out = "(" + cond + ")"
    for ex in exceptions:
        if isinstance(ex.fields, str):
            comp = ex.comps if isinstance(ex.comps, str) else "in"
            icond = ""
            if ex.values:
                icond = f"({ex.fields} {comp} ({', '.join(_quote(v) for v in ex.values)}))"
        else:
            fields = ex.fields or []
            comps = ex.comps if isinstance(ex.comps, list) else ["="] * len(fields)
            tuples = []
            for tup in ex.values:
                parts = []
                for f, c, v in zip(fields, comps, tup, strict=False):
                    if isinstance(v, list):
                        val = "(" + ", ".join(_quote(x) for x in v) + ")"
                    elif c in _LIST_OPS and not v.startswith("("):
                        val = "(" + v + ")"
                    else:
                        val = _quote(v)
                    parts.append(f" {f} {c} {val}")
                tuples.append("(" + " and".join(parts) + ")")
            icond = "(" + " or ".join(tuples) + ")" if tuples else ""
        if icond:
            out += " and not " + icond
    return out


class _Resolver:
    """Macro substitution with visibility, loop detection and usage marks."""

    def __init__(self, macros: dict[str, MacroDef], trees: dict[str, ast.Node]) -> None:
        self.macros = macros
        self.trees = trees
        self.done: dict[str, ast.Node] = {}
        # id of a resolved composite macro tree -> memo key. The tree object is shared by every rule
        # that references the macro, so the compiler can evaluate it once per event for all of them.
        self.shared: dict[int, str] = {}

    def macro(self, name: str, stack: tuple[str, ...]) -> ast.Node:
        if name in self.done:
            return self.done[name]
        if name in stack:
            raise CompileError(f"reference loop in macro '{name}'")
        tree = self.resolve(self.trees[name], self.macros[name].visibility, stack + (name,))
        self.done[name] = tree
        if isinstance(tree, ast.And | ast.Or | ast.Not):
            self.shared[id(tree)] = f"\x01macro\x00{name}"
        return tree

    def resolve(self, node: ast.Node, visibility: int | None, stack: tuple[str, ...] = ()) -> ast.Node:
        if isinstance(node, ast.MacroRef):
            m = self.macros.get(node.name)
            if m is None or node.name not in self.trees or (visibility is not None and m.index >= visibility):
                raise CompileError(f"Undefined macro '{node.name}' used in filter.", node.pos)
            m.used = True
            return self.macro(node.name, stack)
        if isinstance(node, ast.And):
            return ast.And(tuple(self.resolve(c, visibility, stack) for c in node.children))
        if isinstance(node, ast.Or):
            return ast.Or(tuple(self.resolve(c, visibility, stack) for c in node.children))
        if isinstance(node, ast.Not):
            return ast.Not(self.resolve(node.child, visibility, stack))
        return node


def _read(path: str) -> list[Node | None]:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime, st.st_size)
    docs = _YAML_CACHE.get(key)
    if docs is None:
        with open(path, encoding="utf-8") as fh:
            docs = load_documents(fh.read(), path)
        _YAML_CACHE[key] = docs
    return docs


def load(paths: list[str], *, compat: str = "kubetrail", texts: dict[str, str] | None = None) -> Loaded:
    """Load ``paths`` (and in-memory ``texts``: name -> YAML) in order; never raises for bad rules."""
    col = Collector()
    sources: list[tuple[str, str | None]] = [(p, None) for p in paths] + list((texts or {}).items())
    for name, text in sources:
        try:
            docs = load_documents(text, name) if text is not None else _read(name)
        except YamlError as exc:
            col.error(exc.pos, exc.message)
            continue
        except OSError as exc:
            col.error(Pos(name, 1, 1), f"cannot read rules file: {exc.strerror}")
            continue
        for doc in docs:
            col.add_document(doc)
    loaded = _compile(col, compat)
    rank = {name: i for i, (name, _) in enumerate(sources)}
    loaded.diagnostics.sort(key=lambda d: (rank.get(d.pos.file, len(rank)), d.pos.line, d.pos.col) if d.pos
                            else (len(rank), 0, 0))
    return loaded


def _cond_error(diags: list[Diagnostic], pos: Pos, what: str, exc: Exception, text: str, orig: str) -> None:
    """Report a condition error; exact line:col when the text is the unchanged one-line YAML scalar."""
    offset = getattr(exc, "pos", 0)
    message = getattr(exc, "message", str(exc))
    near = text[offset : offset + 30].replace("\n", " ")
    where = pos.at(text, offset) if text == orig else pos
    diags.append(Diagnostic(where, f"{what}: {message} (at offset {offset}: '{near}')"))


def _compile(col: Collector, compat: str) -> Loaded:
    diags = col.diagnostics
    lists = sorted(col.lists.values(), key=lambda d: d.index)
    expanded: dict[str, list[str]] = {}
    for lst in lists:  # nested lists: only those defined before this list's latest (re)definition
        items: list[str] = []
        for item in lst.items:
            ref = col.lists.get(item)
            if ref is not None and ref.name in expanded and ref.index < lst.visibility:
                items.extend(expanded[ref.name])
                ref.used = True
            else:
                items.append(item)
        expanded[lst.name] = items

    def subst(text: str) -> str:
        for lst in lists:
            if lst.name in text:
                text, used = substitute_list(text, lst.name, expanded[lst.name])
                lst.used = lst.used or used
        return text

    trees: dict[str, ast.Node] = {}
    texts: dict[str, str] = {}
    for macro in sorted(col.macros.values(), key=lambda d: d.index):
        texts[macro.name] = subst(macro.condition)
        try:
            trees[macro.name] = parse_condition(texts[macro.name])
        except ConditionSyntaxError as exc:
            _cond_error(diags, macro.pos, f"macro '{macro.name}'", exc, texts[macro.name], macro.condition)
    resolver = _Resolver(col.macros, trees)
    for name in trees:
        try:
            resolver.macro(name, ())
        except CompileError as exc:
            _cond_error(diags, col.macros[name].pos, f"macro '{name}'", exc, texts[name], col.macros[name].condition)
    compiled: list[CompiledRule] = []
    skipped: Counter[tuple[str, str]] = Counter()
    for rule in sorted(col.rules.values(), key=lambda r: r.index):
        if rule.source != SOURCE:
            skipped[(rule.pos.file, rule.source)] += 1
            _mark_usage(rule, subst, resolver)
            continue
        cr = _compile_rule(rule, subst, resolver, compat, diags)
        if cr is not None:
            compiled.append(cr)
    for (file, source), n in skipped.items():
        diags.append(Diagnostic(Pos(file, 1, 1), f"Unknown source {source}, skipping {n} rule(s)", "warning"))
    for m in col.macros.values():
        if not m.used:
            diags.append(Diagnostic(m.pos, f"Macro '{m.name}' not referred to by any other rule/macro", "warning"))
    for lst in lists:
        if not lst.used:
            diags.append(Diagnostic(lst.pos, f"List '{lst.name}' not referred to by any other rule/macro/list",
                                    "warning"))
    counts = {"lists": len(col.lists), "macros": len(col.macros), "rules": len(col.rules),
              "compiled": len(compiled), "skipped": sum(skipped.values())}
    return Loaded(compiled, diags, counts)


def _mark_usage(rule: RuleDef, subst: object, resolver: _Resolver) -> None:
    """Rules of other sources are not compiled, but the macros they use are not 'unused'."""
    with contextlib.suppress(ConditionSyntaxError, CompileError):
        resolver.resolve(parse_condition(subst(exceptions_text(rule.condition, rule.exceptions))), None)  # type: ignore[operator]


def _compile_rule(rule: RuleDef, subst: object, resolver: _Resolver, compat: str,
                  diags: list[Diagnostic]) -> CompiledRule | None:
    what = f"rule '{rule.name}'"
    text = subst(exceptions_text(rule.condition, rule.exceptions))  # type: ignore[operator]
    compiler = Compiler(compat, shared=resolver.shared)
    try:
        tree = resolver.resolve(parse_condition(text), None)
        pred = compiler.compile(tree)
    except (ConditionSyntaxError, CompileError) as exc:
        if rule.skip_unknown and "nonexistent field" in str(exc):
            diags.append(Diagnostic(rule.pos, f"{what}: {exc} (skipped: skip-if-unknown-filter)", "warning"))
            return None
        _cond_error(diags, rule.pos, f"{what} condition", exc, text, rule.condition)
        return None
    try:
        output = compile_output(rule.output, compiler)
    except CompileError as exc:
        diags.append(Diagnostic(rule.pos, f"{what} output: {exc.message}"))
        return None
    for w in dict.fromkeys(compiler.warnings):
        diags.append(Diagnostic(rule.pos, f"{what}: {w}", "warning"))
    return CompiledRule(rule.name, rule.desc, rule.priority, rule.source, rule.enabled, tuple(rule.tags), pred,
                        output, tree, rule.index, rule.pos, value_sets(tree, "ka.verb"),
                        value_sets(tree, "ka.target.resource"))
