"""Every detector kubetrail runs, by id: Falco-language rules, stateful detectors, credential risks.

``kubetrail rules list`` prints the catalog (id, origin, priority, tags, whether it is on, where it
is defined). ``check_names`` holds ``DATA/detect.yaml`` to it: a name under ``disable:``, an
``exceptions[].rule`` or a ``suppress.rules`` key that matches no detector is a configuration error
naming the key (``disable[2]: no detector, tag or detector group 'Legacy Servce Account Token Used'``),
because a typo there would silently leave a detector on.

Ids are the rule names alerts carry: a Falco rule's name, a stateful detector's rule (a detector may
raise several, e.g. first_seen), ``Credential risk: <flag>``. ``disable:`` also takes a Falco tag,
an origin (``rule``, ``stateful``, ``credentials``) or a stateful detector's name (``first_seen``).
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field

from kubetrail.alerts.config import DetectSettings, at
from kubetrail.alerts.tuning import disabled
from kubetrail.credentials import flags
from kubetrail.detect.engine import RuleSet
from kubetrail.detect.falco.collector import PRIORITY_NAMES
from kubetrail.detect.reuse import RULE as REUSE_RULE
from kubetrail.detect.stateful import DETECTORS
from kubetrail.errors import ConfigError

ORIGINS = ("rule", "stateful", "credentials")


@dataclass(frozen=True)
class Detector:
    id: str
    origin: str  # rule | stateful | credentials
    priority: str  # the most severe it raises
    where: str  # file:line of a rule, the module of a detector
    desc: str = ""
    tags: tuple[str, ...] = ()
    group: str = ""  # a stateful detector's name (first_seen, rate.denied …)
    enabled: bool = True
    alerts: str = "yes"  # credential risks: yes | when created by a person | no (an inventory fact)
    source: str = "k8s_audit"
    extra: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        """The `rules list --json` object (``rule`` = ``id``, kept from before the catalog)."""
        return {"id": self.id, "rule": self.id, "origin": self.origin, "priority": self.priority,
                "enabled": self.enabled, "alerts": self.alerts, "tags": list(self.tags), "group": self.group or None,
                "source": self.source, "where": self.where, "desc": self.desc}


def _doc(obj: object) -> str:
    text = inspect.getdoc(inspect.getmodule(obj)) or ""
    return text.split("\n\n", 1)[0].replace("\n", " ").strip()


def _rules_of(cls: type) -> tuple[tuple[str, str], ...]:
    """A detector's (rule, priority) pairs: its ``rules``, else its ``rule`` at Warning."""
    declared = getattr(cls, "rules", None)
    if declared:
        return tuple(declared)
    rule = getattr(cls, "rule", "")
    return ((rule, "Warning"),) if rule else ()


def stateful_detectors() -> list[Detector]:
    out = [Detector(id=rule, origin="stateful", priority=prio, where=cls.__module__, desc=_doc(cls),
                    group=getattr(cls, "name", ""), source="stateful")
           for cls in DETECTORS for rule, prio in _rules_of(cls)]
    out.append(Detector(id=REUSE_RULE, origin="stateful", priority="Warning", where="kubetrail.detect.reuse",
                        desc="Two stored records with one auditID and stage but different content.", group="reuse",
                        source="stateful"))
    return out


def credential_risks() -> list[Detector]:
    out = []
    for name, prio in flags.PRIORITIES.items():
        if name not in flags.ATTACK:
            alerts = "no (inventory fact)"
        else:
            alerts = "yes" if flags.ATTACK[name] is None else "when created by a person"
        out.append(Detector(id=flags.RULE_PREFIX + name, origin="credentials", priority=prio,
                            where="kubetrail.credentials.flags", desc=flags.DESCRIPTIONS.get(name, ""),
                            tags=("credentials",), alerts=alerts, source="credentials"))
    return out


def falco_rules(ruleset: RuleSet) -> list[Detector]:
    return [Detector(id=r.name, origin="rule", priority=PRIORITY_NAMES[r.priority], where=str(r.pos),
                     desc=r.desc.strip(), tags=tuple(r.tags), enabled=r.enabled, source=r.source)
            for r in ruleset.rules]


def catalog(ruleset: RuleSet, settings: DetectSettings | None = None, builtin_only: bool = False) -> list[Detector]:
    """Falco rules (as loaded, enabled or not), then stateful detectors, then credential risks; with
    ``settings`` the stateful and credential ones say whether ``disable:`` turns them off."""
    found = falco_rules(ruleset)
    if builtin_only:
        return found
    others = stateful_detectors() + credential_risks()
    if settings is not None:
        others = [Detector(**{**d.__dict__, "enabled": not _off(d, settings)}) for d in others]
        if not settings.stateful.enabled:
            others = [Detector(**{**d.__dict__, "enabled": False}) if d.origin == "stateful" else d for d in others]
    return found + others


def _off(d: Detector, settings: DetectSettings) -> bool:
    return disabled(settings.disable, d.id, (*d.tags, d.origin, d.group))


def check_names(settings: DetectSettings, detectors: list[Detector], origin: str = "detect.yaml") -> None:
    """Refuse names in detect.yaml that match no detector (see the module doc)."""
    ids = [d.id for d in detectors]
    labels = {t for d in detectors for t in d.tags} | set(ORIGINS) | {d.group for d in detectors if d.group}
    for i, item in enumerate(settings.disable):
        if item not in labels and not any(fnmatch.fnmatchcase(x, item) for x in ids):
            raise ConfigError(at(origin, f"disable[{i}]"), f"no detector, tag or detector group {item!r} "
                              "(`kubetrail rules list` shows them)")
    for i, ex in enumerate(settings.exceptions):
        if not any(fnmatch.fnmatchcase(x, ex.rule) for x in ids):
            raise ConfigError(at(origin, f"exceptions[{i}].rule"), f"no detector {ex.rule!r} (`kubetrail rules list`)")
    for name in settings.suppress.rules:
        if name not in ids:
            raise ConfigError(at(origin, f"suppress.rules.{name}"), f"no detector {name!r} (`kubetrail rules list`)")


def disabled_groups(settings: DetectSettings, detectors: list[Detector]) -> set[str]:
    """Stateful detectors (by name) whose every rule is turned off: they are not run at all."""
    groups: dict[str, list[bool]] = {}
    for d in detectors:
        if d.origin == "stateful" and d.group:
            groups.setdefault(d.group, []).append(_off(d, settings))
    return {g for g, offs in groups.items() if all(offs)}
