"""What ``kubetrail demo`` prints after the ingest: the hunted timeline and what later parts found.

The trail, the detections and the credential inventory are separate parts of kubetrail that plug into
the pipeline as consumers. The demo asks each of them through its own public command
(``kubetrail verify --json``, ``kubetrail alerts --json``, ``kubetrail creds list --json``) in a
child process, so the demo depends only on their documented output, never on their internals, and
a part that is missing (or fails) costs one line of output, not the demo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from kubetrail.demo.timeline import Step
from kubetrail.timefmt import format_ns

Echo = Callable[[str], None]
PRIORITY_ORDER = ["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "INFO", "DEBUG"]


def registered_commands() -> set[str]:
    """Top-level ``kubetrail`` commands present in this build (imported late: cli imports us)."""
    from kubetrail.cli import cli
    return set(cli.commands)


def run_json(args: list[str], data_dir: str, timeout: float = 300) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``kubetrail ARGS --data DIR`` and parse the JSON objects it prints (one per line or a list)."""
    env = dict(os.environ, KUBETRAIL_DATA=data_dir)
    try:
        proc = subprocess.run([sys.executable, "-m", "kubetrail", *args, "--data", data_dir], capture_output=True,
                              timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, [], str(exc)
    out: list[dict[str, Any]] = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith((b"{", b"[")):
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        out.extend(d for d in (doc if isinstance(doc, list) else [doc]) if isinstance(d, dict))
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return proc.returncode, out, err[-1] if err else ""


def _target(m: Any) -> str:
    parts = "/".join(p for p in (m.namespace, m.resource, m.name) if p)
    return (parts + (f"/{m.subresource}" if m.subresource else "")) if parts else m.request_uri.split("?")[0]


def print_timeline(steps: list[Step], echo: Echo, per_step: int = 3) -> int:
    """One block per attack step; returns how many steps were found in the store."""
    found = 0
    for step in steps:
        mark = "x" if step.records else " "
        found += bool(step.records)
        echo(f"  [{mark}] {step.title}" + (f"  ({len(step.records)} requests)" if len(step.records) > 1 else ""))
        for r in step.records[:per_step]:
            m = r.meta
            who = m.user or "(unauthenticated)"
            echo(f"        {(format_ns(r.time) or '')[11:19]}  #{r.leaf_index:<6} {m.code or '-':>3} {m.verb:<8} "
                 f"{_target(m)}  {who}  [{','.join(m.source_ips)}]")
        if len(step.records) > per_step:
            echo(f"        … and {len(step.records) - per_step} more")
    return found


def _rank(priority: Any) -> int:
    p = str(priority or "").upper()
    return PRIORITY_ORDER.index(p) if p in PRIORITY_ORDER else len(PRIORITY_ORDER)


def print_alerts(data_dir: str, echo: Echo, limit: int = 15) -> bool:
    if "alerts" not in registered_commands():
        echo("  (detection is not part of this build yet)")
        return False
    code, alerts, err = run_json(["alerts", "--json"], data_dir)
    if code != 0:
        echo(f"  (kubetrail alerts failed: {err or f'exit {code}'})")
        return False
    if not alerts:
        echo("  no alerts raised (is the detection engine wired into the pipeline?)")
        return True
    by_rule: Counter[tuple[str, str]] = Counter((str(a.get("rule", "?")), str(a.get("priority", ""))) for a in alerts)
    echo(f"  {len(alerts)} alerts from {len(by_rule)} rules:")
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for a in alerts:
        first.setdefault((str(a.get("rule", "?")), str(a.get("priority", ""))), a)
    for (rule, priority), n in sorted(by_rule.items(), key=lambda kv: (_rank(kv[0][1]), -kv[1], kv[0][0]))[:limit]:
        subject = first[(rule, priority)].get("subject") or ""
        echo(f"    {priority:<9} {n:>4}×  {rule}" + (f"  — e.g. {subject}" if subject else ""))
    if len(by_rule) > limit:
        echo(f"    … and {len(by_rule) - limit} more rules")
    return True


def _flag_priority(flag: Any) -> str:
    return str(flag.get("priority", "")) if isinstance(flag, dict) else ""


def _flag_text(flag: Any) -> str:
    if isinstance(flag, dict):
        return str(flag.get("flag") or flag.get("name") or flag.get("code") or flag.get("id") or "")
    return str(flag)


def _cred_rank(c: dict[str, Any]) -> tuple[int, int, int, str, str]:
    """system:masters first, then by the worst flag, then in the order they were made (the attack's order)."""
    groups = c.get("groups") if isinstance(c.get("groups"), list) else []
    flags = c.get("flags") if isinstance(c.get("flags"), list) else []
    worst = min((_rank(_flag_priority(f)) for f in flags), default=len(PRIORITY_ORDER) + 1)
    created = str(c.get("created_at") or "")
    return (0 if "system:masters" in groups else 1, worst, 0 if created else 1, created, str(c.get("id", "")))


def _serious(c: dict[str, Any]) -> bool:
    return any(_rank(_flag_priority(f)) < PRIORITY_ORDER.index("NOTICE") or not _flag_priority(f)
               for f in c.get("flags") or [])


def print_credentials(data_dir: str, echo: Echo, limit: int = 6) -> bool:
    if "creds" not in registered_commands():
        echo("  (the credential inventory is not part of this build yet)")
        return False
    code, creds, err = run_json(["creds", "list", "--json"], data_dir)
    if code != 0:
        echo(f"  (kubetrail creds list failed: {err or f'exit {code}'})")
        return False
    kinds = Counter(str(c.get("kind", "?")) for c in creds)
    echo(f"  {len(creds)} credentials (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")
    ranked = sorted(creds, key=_cred_rank)
    shown = [c for c in ranked if _serious(c)][:limit] or ranked[:limit]
    for c in shown:
        groups = ",".join(g for g in c.get("groups") or [] if not str(g).startswith("system:serviceaccounts"))
        ident = c.get("fingerprint") or c.get("jti") or c.get("id") or ""
        echo(f"    {c.get('kind', '?'):<8} {c.get('subject', '')}" + (f" [{groups}]" if groups else "")
             + f"  ({str(ident)[:16]}…)")
        made = ", ".join(f"{k.replace('_', ' ')} {c[k]}" for k in ("created_by", "approved_by") if c.get(k))
        ips = ",".join(c.get("source_ips") or [])
        echo(f"             {made}{'; ' if made else ''}{c.get('uses', 0)} uses" + (f" from {ips}" if ips else ""))
        flags = [t for t in (_flag_text(f) for f in c.get("flags") or []) if t]
        if flags:
            echo(f"             flags: {', '.join(flags)}")
    rest = len(creds) - len(shown)
    unaccounted = sum(1 for c in creds if c not in shown and c.get("unaccounted"))
    if rest:
        echo(f"    … and {rest} more" + (f", {unaccounted} of them in use but never issued in the trail "
                                          "(before logging began, or outside the API)" if unaccounted else ""))
    return True


def print_trail(data_dir: str, echo: Echo) -> bool:
    if "verify" not in registered_commands():
        echo("  (the tamper-evident trail is not part of this build yet)")
        return False
    code, docs, err = run_json(["verify", "--json"], data_dir)
    doc = docs[-1] if docs else {}
    if doc.get("ok") is True:
        root = str(doc.get("root", ""))
        echo(f"  verified: {doc.get('size', '?')} entries, root {root[:16]}{'…' if len(root) > 16 else ''}")
    elif doc:
        echo(f"  NOT verified: first bad index {doc.get('first_bad_index')}, reason {doc.get('reason')}")
    else:
        echo(f"  (kubetrail verify failed: {err or f'exit {code}'})")
        return False
    return True
