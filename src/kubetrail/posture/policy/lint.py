"""Lint an audit policy: a coverage matrix over security-relevant requests, leaks, and rule mistakes.

Coverage is simulation, not pattern matching: every synthetic request of every class in
``classes.CLASSES`` goes through the same evaluator the apiserver semantics are modelled in, so
rule order, groups, shadowing and ``omitStages`` all count (a KICS-style "is the word ``secrets``
somewhere in the file" check would not). Verdicts per class:

* ``missing`` (error): some request of the class is not recorded at all, or its key stage is omitted;
* ``leak`` (error): recorded above the class's safe maximum (secret material lands in the log);
* ``shallow`` (warn): recorded, but below the level kubetrail needs (no body), or only at the end
  of a session whose start stage is omitted;
* ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetrail.posture.policy.checks import rule_checks
from kubetrail.posture.policy.classes import CLASSES, RequestClass, describe
from kubetrail.posture.policy.match import Evaluator
from kubetrail.posture.policy.model import Level, Loaded, Problem

SEVERITY_RANK = {"info": 0, "warn": 1, "error": 2}
VERDICT_SEVERITY = {"ok": "info", "shallow": "warn", "leak": "error", "missing": "error"}
_VERDICT_RANK = {"ok": 0, "shallow": 1, "leak": 2, "missing": 3}


@dataclass(frozen=True)
class Coverage:
    """One row of the matrix: what the policy gives a class of requests against what is needed."""

    cls: RequestClass
    verdict: str
    low: Level
    high: Level
    rules: tuple[int | None, ...]
    detail: str

    @property
    def level_text(self) -> str:
        return self.low.wire if self.low == self.high else f"{self.low.wire}..{self.high.wire}"

    def to_json(self) -> dict[str, object]:
        return {"kind": "coverage", "class": self.cls.id, "title": self.cls.title, "verdict": self.verdict,
                "level": self.level_text, "need": self.cls.need.wire, "max": self.cls.most.wire,
                "stage": self.cls.stage, "rules": list(self.rules), "cis": self.cls.cis, "detail": self.detail}


@dataclass
class LintReport:
    coverage: list[Coverage] = field(default_factory=list)
    findings: list[Problem] = field(default_factory=list)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def fails(self, fail_on: str) -> bool:
        """True when any finding is at or above ``fail_on`` ("warn" or "error")."""
        return any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[fail_on] for f in self.findings)

    @property
    def leaks(self) -> list[Coverage]:
        return [c for c in self.coverage if c.verdict == "leak"]


def _request_verdict(cls: RequestClass, level: Level, keeps_stage: bool, keeps_complete: bool) -> tuple[str, str]:
    if level == Level.NONE:
        return "missing", "not recorded (level None)"
    if not keeps_stage:
        if cls.stage != "ResponseComplete" and keeps_complete and cls.id != "unauthenticated":
            return "shallow", f"{cls.stage} omitted: only seen when the session ends"
        return "missing", f"stage {cls.stage} omitted"
    if level > cls.most:
        return "leak", f"recorded at {level.wire}, above {cls.most.wire}"
    if level < cls.need:
        return "shallow", f"recorded at {level.wire}, needs {cls.need.wire}"
    return "ok", ""


def coverage(evaluator: Evaluator, cls: RequestClass) -> Coverage:
    """Evaluate every request of a class; the row takes the worst request's verdict."""
    worst, worst_detail = "ok", ""
    levels: list[Level] = []
    rules: list[int | None] = []
    for req in cls.requests:
        d = evaluator.evaluate(req)
        levels.append(d.level)
        if d.rule_index not in rules:
            rules.append(d.rule_index)
        verdict, why = _request_verdict(cls, d.level, d.keeps(cls.stage), d.keeps("ResponseComplete"))
        if _VERDICT_RANK[verdict] > _VERDICT_RANK[worst]:
            where = "no rule" if d.rule_index is None else f"rules[{d.rule_index}]"
            worst, worst_detail = verdict, f"{describe(req)}: {why} ({where})"
    return Coverage(cls, worst, min(levels), max(levels), tuple(rules), worst_detail)


def lint(loaded: Loaded) -> LintReport:
    """Everything wrong with a loaded policy. A policy the apiserver refuses gets only load problems."""
    report = LintReport(findings=list(loaded.problems))
    if loaded.policy is None:
        report.findings.append(Problem("error", "refused", "",
                                       "the apiserver refuses to start with this policy; nothing is recorded"))
        return report
    evaluator = Evaluator(loaded.policy)
    for cls in CLASSES:
        row = coverage(evaluator, cls)
        report.coverage.append(row)
        if row.verdict != "ok":
            cis = f" [CIS {cls.cis}]" if cls.cis else ""
            report.findings.append(Problem(VERDICT_SEVERITY[row.verdict], row.verdict, f"class {cls.id}",
                                           f"{cls.title}{cis}: {row.detail}"))
    report.findings.extend(rule_checks(loaded.policy))
    return report
