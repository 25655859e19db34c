"""Check a kube-apiserver's audit configuration, kube-bench style, from its static-pod manifest, its
command line or a kubeadm ClusterConfiguration.

Unlike kube-bench, a flag that is not set is judged by its *effective* default, which changed in
1.36 (maxage 0 -> 366, maxbackup 0 -> 100, maxsize 0 -> 100 with 0 now meaning "no rotation"),
and ``0`` is read as the apiserver reads it ("unlimited") rather than failed as "< 30". The
policy file, when readable, is linted (CIS 3.2.2), which kube-bench leaves manual.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubetrail.errors import InputError
from kubetrail.posture.policy.lint import lint
from kubetrail.posture.policy.model import load_policy_file

# kube-bench cfg/config.yaml version_mapping: benchmark -> ids of path, maxage, maxbackup, maxsize
CIS_FLAG_IDS: dict[str, tuple[str, str, str, str]] = {
    "cis-1.5": ("1.2.22", "1.2.23", "1.2.24", "1.2.25"), "cis-1.6": ("1.2.22", "1.2.23", "1.2.24", "1.2.25"),
    "cis-1.20": ("1.2.21", "1.2.22", "1.2.23", "1.2.24"), "cis-1.23": ("1.2.19", "1.2.20", "1.2.21", "1.2.22"),
    "cis-1.24": ("1.2.18", "1.2.19", "1.2.20", "1.2.21"), "cis-1.7": ("1.2.18", "1.2.19", "1.2.20", "1.2.21"),
    "cis-1.8": ("1.2.17", "1.2.18", "1.2.19", "1.2.20"), "cis-1.9": ("1.2.16", "1.2.17", "1.2.18", "1.2.19"),
    "cis-1.10": ("1.2.16", "1.2.17", "1.2.18", "1.2.19"), "cis-1.11": ("1.2.16", "1.2.17", "1.2.18", "1.2.19"),
    "cis-1.12": ("1.2.16", "1.2.17", "1.2.18", "1.2.19"),
}
DEFAULT_BENCHMARK = "cis-1.12"
_BENCH_BY_MINOR = [(15, "cis-1.5"), (18, "cis-1.6"), (21, "cis-1.20"), (23, "cis-1.23"), (24, "cis-1.24"),
                   (25, "cis-1.7"), (26, "cis-1.8"), (27, "cis-1.9"), (28, "cis-1.10"), (31, "cis-1.11")]
BOOL_FLAGS = {"audit-log-compress", "audit-log-truncate-enabled", "audit-webhook-truncate-enabled",
              "audit-log-batch-throttle-enable", "audit-webhook-batch-throttle-enable"}


def benchmark_for(version: tuple[int, int] | None) -> str:
    """The kube-bench benchmark directory for a Kubernetes version (the newest one for recent releases)."""
    if version is None or version[0] != 1:
        return DEFAULT_BENCHMARK
    return next((b for top, b in _BENCH_BY_MINOR if version[1] <= top), DEFAULT_BENCHMARK)


@dataclass(frozen=True)
class Check:
    id: str  # kubetrail's stable id
    status: str  # PASS | FAIL | WARN | INFO
    title: str
    detail: str = ""
    remediation: str = ""
    cis: dict[str, str] = field(default_factory=dict)  # benchmark -> item id

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "title": self.title, "detail": self.detail,
                "remediation": self.remediation, "cis": self.cis}


@dataclass
class ApiserverConfig:
    """Flags (without ``--``) plus, when known, volume mounts: mountPath -> hostPath (None = not hostPath)."""

    flags: dict[str, str]
    source: str
    version: tuple[int, int] | None = None
    mounts: dict[str, str | None] | None = None


def parse_flags(tokens: list[str]) -> dict[str, str]:
    """pflag rules: ``--f=v``, ``--f v`` for non-bool flags, bare ``--f`` = true."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("--"):
            continue
        name, eq, value = tok[2:].partition("=")
        if not eq:
            if name not in BOOL_FLAGS and i < len(tokens) and (tokens[i] == "-" or not tokens[i].startswith("-")):
                value, i = tokens[i], i + 1
            else:
                value = "true"
        flags[name] = value
    return flags


def parse_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)(?:\.\d+)?", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def from_cmdline(text: str, version: tuple[int, int] | None = None) -> ApiserverConfig:
    """A command line as ``ps`` shows it, or ``/proc/PID/cmdline`` (NUL-separated)."""
    tokens = [t for t in text.split("\0") if t] if "\0" in text else shlex.split(text)
    return ApiserverConfig(parse_flags(tokens), "command line", version)


def _load_yaml_docs(path: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


_SHELLS = {"sh", "bash", "ash", "dash", "busybox"}
_SHELL_OPS = {";", "&&", "||", "|", "&"}


def _is_apiserver(word: str) -> bool:
    return posixpath.basename(word) == "kube-apiserver"


def _apiserver_argv(c: dict[str, Any]) -> list[str] | None:
    """The apiserver's arguments in a container, or None when it does not run the apiserver.

    ``command``/``args`` run it directly, or through ``sh -c "exec kube-apiserver --flag … 1>>log"``
    (GCE and other manifests): then the script is split like a shell would and the words after
    ``kube-apiserver`` up to the first shell operator are its arguments (redirections are skipped
    by the flag parser, which only reads ``--`` words)."""
    cmd = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
    if cmd and posixpath.basename(cmd[0]) in _SHELLS and "-c" in cmd[1:]:
        at = cmd.index("-c") + 1
        try:
            words = shlex.split(" ".join(cmd[at:at + 1]))
        except ValueError:
            return None
        start = next((i for i, w in enumerate(words) if _is_apiserver(w)), None)
        if start is None:
            return None
        tail = words[start + 1:]
        end = next((i for i, w in enumerate(tail) if w in _SHELL_OPS), len(tail))
        return tail[:end] + cmd[at + 1:]
    if (cmd and _is_apiserver(cmd[0])) or (not c.get("command") and c.get("name") == "kube-apiserver"):
        return cmd[1:] if cmd and _is_apiserver(cmd[0]) else cmd
    if c.get("name") == "kube-apiserver":
        return cmd
    return None


def apiserver_container(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The container of a pod spec that runs ``kube-apiserver``: the one named so first, then any
    other that runs the binary (a sidecar such as kops' ``kube-apiserver-healthcheck`` is not it).
    ``posture.apiserver_setup`` patches the same container this module checks."""
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    return next((c for c in sorted(containers, key=lambda c: c.get("name") != "kube-apiserver")
                 if _apiserver_argv(c) is not None), None)


def from_manifest(path: str, version: tuple[int, int] | None = None) -> ApiserverConfig:
    """A static-pod manifest (``/etc/kubernetes/manifests/kube-apiserver.yaml``): the container that
    runs ``kube-apiserver`` (see ``apiserver_container``)."""
    for doc in _load_yaml_docs(path):
        spec = doc.get("spec") or {} if isinstance(doc, dict) else {}
        c = apiserver_container(spec)
        argv = _apiserver_argv(c) if c is not None else None
        if c is not None and argv is not None:
            hostpaths = {v.get("name"): (v.get("hostPath") or {}).get("path") for v in spec.get("volumes") or []}
            mounts = {m["mountPath"]: hostpaths.get(m.get("name")) for m in c.get("volumeMounts") or []
                      if m.get("mountPath")}
            return ApiserverConfig(parse_flags(argv), path, version or parse_version(str(c.get("image") or "")),
                                   mounts)
    raise InputError(f"{path}: no kube-apiserver container found")


def from_kubeadm(path: str, version: tuple[int, int] | None = None) -> ApiserverConfig:
    """A kubeadm config: ``apiServer.extraArgs`` as a map (v1beta3) or a name/value list (v1beta4)."""
    for doc in _load_yaml_docs(path):
        if not isinstance(doc, dict) or doc.get("kind") != "ClusterConfiguration":
            continue
        api = doc.get("apiServer") or {}
        raw = api.get("extraArgs") or {}
        args = {str(a.get("name")): str(a.get("value")) for a in raw} if isinstance(raw, list) \
            else {str(k): str(v) for k, v in raw.items()}
        mounts = {str(v.get("mountPath")): v.get("hostPath") for v in api.get("extraVolumes") or []}
        return ApiserverConfig(args, path, version or parse_version(str(doc.get("kubernetesVersion") or "")), mounts)
    raise InputError(f"{path}: no ClusterConfiguration document")


def _cis(idx: int) -> dict[str, str]:
    return {b: ids[idx] for b, ids in CIS_FLAG_IDS.items()}


_CIS_321 = {b: "3.2.1" for b in CIS_FLAG_IDS}
_CIS_322 = {b: "3.2.2" for b in CIS_FLAG_IDS}
_MANIFEST = "Edit /etc/kubernetes/manifests/kube-apiserver.yaml on the control-plane node and set "


def _int_flag(cfg: ApiserverConfig, name: str) -> tuple[int | None, str | None]:
    raw = cfg.flags.get(name)
    if raw is None:
        return None, None
    try:
        return int(raw), None
    except ValueError:
        return None, f"--{name}={raw} is not an integer: the apiserver refuses to start"


def _rotation(cfg: ApiserverConfig, idx: int, name: str, floor: int, old: int, new: int, what: str) -> Check:
    """maxage / maxbackup: 0 means unlimited; the default moved from 0 to ``new`` in 1.36."""
    title = f"Ensure that the --{name} argument is set to {floor} or as appropriate"
    fix = _MANIFEST + f"--{name}={floor}"
    value, err = _int_flag(cfg, name)
    if err:
        return Check(name, "FAIL", title, err, fix, _cis(idx))
    if value is None:
        if cfg.version is None:
            return Check(name, "WARN", title, f"not set: the default is {new} since 1.36 and {old} ({what}) "
                         "before; kube-bench fails an unset flag", fix, _cis(idx))
        value = new if cfg.version >= (1, 36) else old
        if value >= floor:
            return Check(name, "PASS", title, f"not set: the default is {value} in 1.{cfg.version[1]} "
                         "(kube-bench still fails an unset flag)", fix, _cis(idx))
    if value < 0:
        return Check(name, "FAIL", title, f"--{name}={value} is invalid", fix, _cis(idx))
    if value == 0:
        return Check(name, "WARN", title, f"{name} is 0: {what}; retention is then someone else's job "
                     "(kube-bench fails 0)", fix, _cis(idx))
    if value < floor:
        return Check(name, "FAIL", title, f"--{name}={value} is below {floor}", fix, _cis(idx))
    return Check(name, "PASS", title, f"--{name}={value}", fix, _cis(idx))


def _maxsize(cfg: ApiserverConfig) -> Check:
    name, title = "audit-log-maxsize", "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate"
    fix = _MANIFEST + "--audit-log-maxsize=100"
    value, err = _int_flag(cfg, name)
    if err:
        return Check(name, "FAIL", title, err, fix, _cis(3))
    if value is None:
        return Check(name, "PASS", title, "not set: rotation at 100 MB (the default before and since 1.36; "
                     "kube-bench still fails an unset flag)", fix, _cis(3))
    if value == 0:
        if cfg.version is not None and cfg.version < (1, 36):
            return Check(name, "PASS", title, "0 means the 100 MB default before 1.36 (it disables rotation "
                         "from 1.36 on)", fix, _cis(3))
        when = "" if cfg.version else " from 1.36 on (before, 0 meant 100 MB)"
        return Check(name, "WARN", title, f"0 disables rotation{when}: the file grows without bound", fix, _cis(3))
    if value < 0:
        return Check(name, "FAIL", title, f"--{name}={value} is invalid", fix, _cis(3))
    if value < 100:
        return Check(name, "FAIL", title, f"--{name}={value} is below 100", fix, _cis(3))
    return Check(name, "PASS", title, f"--{name}={value}", fix, _cis(3))


def _mounted(cfg: ApiserverConfig, path: str) -> tuple[bool, str | None]:
    """Whether ``path`` is under a volume mount, and that mount's hostPath (None if not hostPath)."""
    best = max((m for m in cfg.mounts or {} if path == m or path.startswith(m.rstrip("/") + "/")), key=len,
               default=None)
    return (best is not None, (cfg.mounts or {}).get(best) if best else None)


def check_apiserver(cfg: ApiserverConfig, root: str = "") -> list[Check]:
    """Every audit check for one apiserver. ``root`` prefixes file paths (a node's disk mounted elsewhere)."""
    f = cfg.flags
    out: list[Check] = []
    log_path, policy, webhook = f.get("audit-log-path", ""), f.get("audit-policy-file", ""), \
        f.get("audit-webhook-config-file", "")
    title = "Ensure that the --audit-log-path argument is set"
    fix = _MANIFEST + "--audit-log-path=/var/log/kubernetes/audit/audit.log (and mount the directory from the host)"
    if not log_path:
        detail = "not set: no log backend" + (" (a webhook backend is configured)" if webhook else "")
        out.append(Check("audit-log-path", "FAIL", title, detail, fix, _cis(0)))
    elif log_path == "-":
        out.append(Check("audit-log-path", "WARN", title, "'-' writes audit events to stdout: they live only as "
                         "long as the container log; collect them (kubetrail reads CRI logs)", fix, _cis(0)))
    else:
        out.append(Check("audit-log-path", "PASS", title, f"--audit-log-path={log_path}", fix, _cis(0)))
    out.append(_rotation(cfg, 1, "audit-log-maxage", 30, 0, 366, "rotated files are never deleted by age"))
    out.append(_rotation(cfg, 2, "audit-log-maxbackup", 10, 0, 100, "rotated files are never deleted by count"))
    out.append(_maxsize(cfg))
    out.extend(_policy_checks(cfg, policy, root))
    if policy and not log_path and not webhook:
        out.append(Check("audit-backend", "FAIL", "Ensure that an audit backend is configured",
                         "a policy without --audit-log-path or --audit-webhook-config-file writes nothing",
                         _MANIFEST + "--audit-log-path (or --audit-webhook-config-file)"))
    out.extend(_backend_checks(cfg, log_path, webhook))
    return out


def _policy_checks(cfg: ApiserverConfig, policy: str, root: str) -> list[Check]:
    title = "Ensure that a minimal audit policy is created"
    if not policy:
        return [Check("audit-policy-file", "FAIL", title, "--audit-policy-file is not set: no audit event is "
                      "recorded, whatever backend is configured", _MANIFEST + "--audit-policy-file=/etc/kubernetes/"
                      "audit/policy.yaml; write it with `kubetrail policy generate`", _CIS_321)]
    out = [Check("audit-policy-file", "PASS", title, f"--audit-policy-file={policy}", "", _CIS_321)]
    title = "Ensure that the audit policy covers key security concerns"
    fix = f"kubetrail policy lint {policy}; start from `kubetrail policy generate`"
    try:
        loaded = load_policy_file(posixpath.join(root, policy.lstrip("/")) if root else policy)
    except InputError as exc:
        out.append(Check("audit-policy-coverage", "WARN", title, f"cannot read the policy here ({exc}); "
                         "review it by hand or run kubetrail policy lint on the node", fix, _CIS_322))
        return out
    report = lint(loaded)
    errors, warns = report.count("error"), report.count("warn")
    first = next((x for x in report.findings if x.severity in ("error", "warn")), None)
    detail = f"lint: {errors} errors, {warns} warnings" + (f"; first: {first.where}: {first.message}" if first else "")
    out.append(Check("audit-policy-coverage", "FAIL" if errors else "WARN" if warns else "PASS", title, detail, fix,
                     _CIS_322))
    if loaded.policy and cfg.flags.get("audit-log-mode") == "blocking-strict" \
            and "RequestReceived" in loaded.policy.omit_stages:
        out.append(Check("audit-log-mode", "WARN", "blocking-strict has an effect",
                         "blocking-strict only fails requests when the RequestReceived event cannot be stored, "
                         "and the policy omits RequestReceived: it behaves like blocking",
                         "use --audit-log-mode=blocking, or keep RequestReceived in the policy"))
    return out


def _backend_checks(cfg: ApiserverConfig, log_path: str, webhook: str) -> list[Check]:
    f, out = cfg.flags, []
    if log_path:
        fmt = f.get("audit-log-format", "json")
        out.append(Check("audit-log-format", "PASS" if fmt == "json" else "FAIL", "Ensure audit events are JSON",
                         f"--audit-log-format={fmt}" + ("" if fmt == "json" else ": the legacy format has no "
                                                        "objectRef, annotations or user.extra"),
                         _MANIFEST + "--audit-log-format=json (the default)"))
        if f.get("audit-log-mode") == "batch":
            out.append(Check("audit-log-mode", "WARN", "Audit log mode does not drop events",
                             "batch mode drops events when its buffer is full (apiserver_audit_error_total)",
                             "use the default --audit-log-mode=blocking"))
        if cfg.mounts is not None and log_path != "-":
            mounted, host = _mounted(cfg, posixpath.dirname(log_path))
            if not host:
                why = "not on a volume" if not mounted else "on a volume that is not a hostPath"
                out.append(Check("audit-log-volume", "WARN", "Audit log directory survives restarts",
                                 f"{posixpath.dirname(log_path)} is {why}: the log is lost when the pod restarts",
                                 "mount the directory from the host (hostPath volume / kubeadm extraVolumes)"))
    for backend in ("log", "webhook"):
        if f.get(f"audit-{backend}-truncate-enabled", "false").lower() == "true":
            out.append(Check(f"audit-{backend}-truncate", "WARN", "Audit events are not truncated",
                             f"--audit-{backend}-truncate-enabled: events over the size limit lose their request "
                             "and response bodies (annotation audit.k8s.io/truncated)",
                             "raise --audit-*-truncate-max-event-size or keep bodies small in the policy"))
    if webhook:
        mode = f.get("audit-webhook-mode", "batch")
        status, detail = ("PASS", "batch mode: a slow receiver costs buffered events, not requests") \
            if mode == "batch" else ("WARN", f"{mode} mode: when the receiver is down every audited request "
                                     "waits up to ~4 minutes per stage (5 attempts, 30 s timeouts)")
        out.append(Check("audit-webhook-mode", status, "Audit webhook cannot stall the apiserver", detail,
                         "use --audit-webhook-mode=batch and keep a log backend as well"))
    if cfg.mounts is not None and f.get("audit-policy-file"):
        mounted, _ = _mounted(cfg, f["audit-policy-file"])
        if not mounted:
            out.append(Check("audit-policy-volume", "WARN", "Audit policy file is mounted into the pod",
                             f"{f['audit-policy-file']} is on no volume mount: the apiserver cannot read it",
                             "mount the policy directory read-only from the host"))
    return out
