"""Where the posture page finds its results: ``DATA/posture/<check>.json``.

``kubetrail policy lint POLICY --save-to DATA`` and ``kubetrail check apiserver … --save-to DATA``
write their ``--json`` document there (atomically, with the time and the input it judged), so the
latest run of each is what ``serve`` shows on ``/posture``. The deployment's daily
check-apiserver CronJob can pass ``--save-to`` the collector's data directory; a run without it
records nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from kubetrail.timefmt import format_ns

POSTURE_DIR = "posture"
CHECKS = {"policy-lint": "kubetrail policy lint", "check-apiserver": "kubetrail check apiserver"}


def save(data_dir: str, check: str, target: str, result: Any, ok: bool) -> str:
    """Write one check's result for the dashboard; returns the path."""
    if check not in CHECKS:
        raise ValueError(f"unknown posture check {check!r}")
    folder = os.path.join(data_dir, POSTURE_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{check}.json")
    doc = {"check": check, "command": CHECKS[check], "target": target, "ok": ok,
           "checked_at": format_ns(time.time_ns()), "result": result}
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def latest(data_dir: str) -> dict[str, dict[str, Any] | None]:
    """The saved result of each check (None: never saved; ``error``: unreadable)."""
    out: dict[str, dict[str, Any] | None] = {}
    for check in CHECKS:
        path = os.path.join(data_dir, POSTURE_DIR, f"{check}.json")
        try:
            with open(path, "rb") as fh:
                doc = orjson.loads(fh.read())
            out[check] = doc if isinstance(doc, dict) else {"error": f"{path} is not a JSON object"}
        except FileNotFoundError:
            out[check] = None
        except (OSError, orjson.JSONDecodeError) as exc:
            out[check] = {"error": f"{path} cannot be read: {exc}"}
    return out
