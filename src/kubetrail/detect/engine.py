"""The detection engine: compiled Falco-language rules over audit records -> matches.

API (what other modules use)::

    from kubetrail.detect.engine import load_rules, builtin_rule_paths, RuleSet, Match

    rs = load_rules(paths, compat="kubetrail" | "falco", match="first" | "all", min_priority="debug")
    rs.errors / rs.warnings        # list[Diagnostic]; str(d) == "file:line:col: error: message"
    rs.counts                      # {"lists", "macros", "rules", "compiled", "skipped"}
    rs.ok                          # no errors
    rs.raise_for_errors()          # RuleError listing every error
    rs.rules                       # list[CompiledRule] in evaluation (definition) order
    rs.evaluate(record_or_event)   # list[Match]; accepts a kubetrail.record.Record or an event dict
    rs.evaluate_many(items)        # Iterator[tuple[item, Match]]
    rs.set_enabled(False, rule="K8s * Created", tag=None)  # Falco's `rules:` enable/disable (fnmatch on
                                   # the name, or a tag), applied in call order; returns the count changed

    Match: rule, priority (e.g. "Warning"), priority_level (0 = Emergency … 7 = Debug), output,
           tags, fields ({field: str | list[str] | None}), source, audit_id, stage, leaf_index, key,
           time (ns or None); match.to_json() -> the `rules test --json` object.

``compat="falco"`` reproduces the k8saudit plugin's quirks (see ``detect/falco/fields.py`` and
docs/detect-falco.md); ``match="first"`` (Falco's default) reports only the first matching rule per
event in definition order, ``"all"`` every matching rule.

Indexing: each rule's resolved condition is analysed for the values ``ka.verb``,
``ka.target.resource``, ``ka.target.subresource`` and ``ka.user.name`` must take (``value_sets``).
An event's index key is those four fields, each replaced by ``None`` unless some rule names that
value, so the key space stays small (user names do not blow the cache up); the candidate rules for a
key are computed once and cached, so an event is tested only against rules that can match it. The
key's fields are read with the same memoised extractors the conditions use, so they are read once
per event. Rules without such constraints used to be candidates for every event; guards
(``detect/guards.py``) narrow them further: the index key is extended with a few more cheap fields
(groups, response code, decision, impersonated user, source IP, annotation pointers), read with the
rules' own extractors, and a rule is a candidate only if the necessary condition read off its tree
holds for those values — an anonymous-request rule is not run for an authenticated user, a
token-annotation rule not for an event without the annotation. The whole key is computed by one
function generated per ruleset from the readers (``detect/fastkey.py``; ``_key_general`` is the
field-by-field reference), which also leaves the four index fields in the event's field cache.

Evaluation shares work between rules (``falco/compiler.py``): each field is extracted once per
event, each macro is evaluated once per event for all rules that use it, and output is rendered only
for rules that matched.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubetrail.detect import fastkey
from kubetrail.detect.falco import ast
from kubetrail.detect.falco.collector import PRIORITY_NAMES, Diagnostic, parse_priority
from kubetrail.detect.falco.compiler import Compiler, value_sets
from kubetrail.detect.falco.context import EventContext
from kubetrail.detect.falco.loader import CompiledRule, load
from kubetrail.detect.guards import Guards
from kubetrail.errors import RuleError

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "rules")
_CACHE_LIMIT = 4096
INDEX_FIELDS = ("ka.verb", "ka.target.resource", "ka.target.subresource", "ka.user.name")
# Where a record carries its rule matches when they were evaluated before it reached the detection
# consumer (a preparation worker had the event parsed, kubetrail/workers.py): ``list[Match]`` in the
# record's ``__dict__``, with ``leaf_index``/``key`` unset; ``DetectConsumer._rules`` takes them.
MATCHES = "_matches"


def builtin_rule_paths() -> list[str]:
    """kubetrail's built-in ruleset, ``detect/rules/*.yaml`` in name order."""
    return sorted(glob.glob(os.path.join(BUILTIN_DIR, "*.yaml")))


@dataclass
class Match:
    rule: str
    priority: str
    priority_level: int
    output: str
    tags: tuple[str, ...]
    fields: dict[str, Any]
    source: str = "k8s_audit"
    audit_id: str | None = None
    stage: str | None = None
    leaf_index: int | None = None
    key: str | None = None
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "priority": self.priority, "output": self.output, "auditID": self.audit_id,
                "stage": self.stage, "leaf_index": self.leaf_index, "tags": list(self.tags),
                "time": self.time, "key": self.key}


@dataclass
class RuleSet:
    rules: list[CompiledRule]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    match: str = "first"
    min_priority: int = 7
    compat: str = "kubetrail"

    def __post_init__(self) -> None:
        if self.match not in ("first", "all"):
            raise RuleError("", f"rule matching must be 'first' or 'all', not {self.match!r}")
        self._reindex()

    eval_errors: int = 0  # rule evaluations that raised (a bug in an extractor); counted, never fatal

    def _reindex(self) -> None:
        self._active = [r for r in self.rules if r.enabled and r.priority <= self.min_priority]
        self._sets = [(r.verbs, r.resources, value_sets(r.tree, INDEX_FIELDS[2]), value_sets(r.tree, INDEX_FIELDS[3]))
                      for r in self._active]
        # guards for the rules the index cannot narrow by resource or subresource (they run on most events)
        self._guards = Guards([r.tree for r in self._active], INDEX_FIELDS, self.compat,
                              broad=[s[1] is None and s[2] is None for s in self._sets])
        self._known = tuple(frozenset().union(*(s[i] for s in self._sets if s[i] is not None),
                                              self._guards.index_known[i])
                            for i in range(len(INDEX_FIELDS)))
        self._keyfn = fastkey.build(self._known, self._guards.readers, [_memo_key(self.compat, f) for f in INDEX_FIELDS])
        self._candidates: dict[tuple[str | None, ...], tuple[CompiledRule, ...]] = {}

    def set_enabled(self, enabled: bool, *, rule: str | None = None, tag: str | None = None) -> int:
        """Enable or disable rules by name (``*`` wildcards) or by tag, like Falco's ``rules:`` config."""
        if (rule is None) == (tag is None):
            raise RuleError("", "give exactly one of rule= or tag=")
        changed = 0
        for r in self.rules:
            if (rule is not None and fnmatch.fnmatchcase(r.name, rule)) or (tag is not None and tag in r.tags):
                changed += r.enabled != enabled
                r.enabled = enabled
        self._reindex()
        return changed

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        errs = self.errors
        if errs:
            first = errs[0]
            rest = "".join(f"\n{e}" for e in errs[1:])
            raise RuleError(str(first.pos or ""), first.message + rest)

    def candidates(self, verb: str | None, resource: str | None, subresource: str | None = None,
                   user: str | None = None) -> tuple[CompiledRule, ...]:
        """The active rules that can match an event with these index fields, in order."""
        values = (verb, resource, subresource, user)
        return self._for_key(tuple(v if v in k else None for v, k in zip(values, self._known, strict=True)))

    def _for_key(self, key: tuple[Any, ...]) -> tuple[CompiledRule, ...]:
        """The rules for an index key (four values) or a guarded key (the four, then the guard profile)."""
        found = self._candidates.get(key)
        if found is None:
            guarded = len(key) > len(INDEX_FIELDS)
            found = tuple(r for i, (r, sets) in enumerate(zip(self._active, self._sets, strict=True))
                          if all(s is None or v in s for s, v in zip(sets, key, strict=False))
                          and (not guarded or self._guards.admits(i, key)))
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def evaluate(self, item: Any) -> list[Match]:
        """Matches for one record (``kubetrail.record.Record``) or one audit event dict."""
        if isinstance(item, dict):
            ev, record = item, None
        else:
            ev, record = item.event(), item
        ctx = EventContext(ev, record)
        out: list[Match] = []
        key = self._keyfn(ev, ctx.audit, ctx.cache)  # ``_key``, inlined (this runs for every event)
        rules = self._candidates.get(key)
        if rules is None:
            rules = self._for_key(key)
        for rule in rules:
            try:
                hit = rule.condition(ctx)
            except Exception:  # noqa: BLE001 - like Falco, an extraction failure is "no value", never a crash
                self.eval_errors += 1
                continue
            if hit:
                out.append(self._match(rule, ctx, ev, record))
                if self.match == "first":
                    break
        return out

    def _key(self, ctx: EventContext) -> tuple[Any, ...]:
        """The event's index key, then its guard profile (``detect/guards.py``), by the generated
        function (``detect/fastkey.py``), which also leaves the index fields in ``ctx.cache``."""
        return self._keyfn(ctx.ev, ctx.audit, ctx.cache)

    def _key_general(self, ctx: EventContext) -> tuple[Any, ...]:
        """``_key`` read field by field: what ``fastkey`` must give (tests/unit/speed/test_fast_key.py)."""
        verb, resource, subresource, user = _index_values(ctx)
        kv, kr, ks, ku = self._known
        key: tuple[Any, ...] = (verb if verb in kv else None, resource if resource in kr else None,
                                subresource if subresource in ks else None, user if user in ku else None)
        if self._guards.fields:
            key += self._guards.profile(ctx)  # plain dict reads that never raise
        return key

    def evaluate_many(self, items: Iterable[Any]) -> Iterator[tuple[Any, Match]]:
        for item in items:
            for m in self.evaluate(item):
                yield item, m

    def _match(self, rule: CompiledRule, ctx: EventContext, ev: dict[str, Any], record: Any) -> Match:
        aid, stage = ev.get("auditID"), ev.get("stage")
        output, fields = rule.output.render_with_fields(ctx)
        return Match(
            rule=rule.name,
            priority=PRIORITY_NAMES[rule.priority],
            priority_level=rule.priority,
            output=output,
            tags=rule.tags,
            fields=fields,
            audit_id=aid if isinstance(aid, str) else None,
            stage=stage if isinstance(stage, str) else None,
            leaf_index=getattr(record, "leaf_index", None),
            key=getattr(record, "key", None),
            time=ctx.time_ns,
        )


def _memo_key(compat: str, name: str) -> str:
    """The per-event cache key the compiled conditions use for field ``name`` (no argument)."""
    memo: tuple[str, Any, Any] = Compiler(compat).field(ast.FieldRef(name, None))[0].memo  # type: ignore[attr-defined]
    return memo[0]


def _index_values(ctx: EventContext) -> tuple[str | None, str | None, str | None, str | None]:
    """The INDEX_FIELDS of an event, as their extractors give them (each is a string at a fixed path,
    in both compat modes; missing when it is not a string or the event has no auditID), read
    directly: this runs for every event, before any rule."""
    if not ctx.audit:
        return None, None, None, None
    ev = ctx.ev
    ref, user, verb = ev.get("objectRef"), ev.get("user"), ev.get("verb")
    if not isinstance(ref, dict):
        ref = {}
    name = user.get("username") if isinstance(user, dict) else None
    resource, subresource = ref.get("resource"), ref.get("subresource")
    return (verb if isinstance(verb, str) else None, resource if isinstance(resource, str) else None,
            subresource if isinstance(subresource, str) else None, name if isinstance(name, str) else None)


def load_rules(paths: Iterable[str], *, compat: str = "kubetrail", match: str = "first",
               min_priority: str = "debug", texts: dict[str, str] | None = None) -> RuleSet:
    """Load and compile rules files (in order; later files override earlier ones). Never raises for bad
    rules: look at ``.errors`` (or call ``raise_for_errors``). ``texts`` adds in-memory files."""
    if compat not in ("kubetrail", "falco"):
        raise RuleError("", f"compat must be 'kubetrail' or 'falco', not {compat!r}")
    level = parse_priority(min_priority)
    if level is None:
        raise RuleError("", f"unknown priority {min_priority!r}")
    loaded = load(list(paths), compat=compat, texts=texts)
    return RuleSet(loaded.rules, loaded.diagnostics, loaded.counts, match=match, min_priority=level, compat=compat)
