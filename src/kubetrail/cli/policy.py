"""``kubetrail policy generate|lint|simulate|explain`` and ``kubetrail check apiserver``."""

from __future__ import annotations

import click
import orjson

from kubetrail.cli.exitcodes import FINDINGS, OK, exit_with
from kubetrail.cli.options import json_option
from kubetrail.errors import ConfigError
from kubetrail.posture import apiserver as api
from kubetrail.posture import managed
from kubetrail.posture.policy.explain import explain as explain_request
from kubetrail.posture.policy.generate import DEFAULT_PROFILE, PROFILES, generate
from kubetrail.posture.policy.lint import lint as lint_policy
from kubetrail.posture.policy.match import Evaluator, RequestAttrs, UserInfo
from kubetrail.posture.policy.model import Loaded, Policy, load_policy_file
from kubetrail.posture.policy.simulate import Simulator
from kubetrail.record import Decoded
from kubetrail.sources.files import read_paths


def _emit(obj: object) -> None:
    click.echo(orjson.dumps(obj).decode())


def _usable(path: str, lenient: bool) -> Policy:
    """A policy simulate/explain can run: refused policies are errors; unknown fields unless --lenient."""
    loaded: Loaded = load_policy_file(path)
    if loaded.policy is None:
        first = next((p for p in loaded.problems if p.severity == "error"), None)
        raise ConfigError(path, f"the apiserver refuses this policy: {first.where}: {first.message}" if first
                          else "the apiserver refuses this policy")
    strict = [p for p in loaded.problems if p.code in ("unknown-field", "duplicate-field")]
    if strict and not lenient:
        raise ConfigError(path, f"{strict[0].where}: {strict[0].message} (--lenient evaluates it as the apiserver "
                          "would, ignoring the field)")
    for p in strict:
        click.echo(f"warning: {path}: {p.where}: {p.message}", err=True)
    return loaded.policy


@click.group("policy")
def policy() -> None:
    """Generate, lint, simulate and explain Kubernetes audit policies."""


@policy.command("generate")
@click.option("--profile", type=click.Choice(PROFILES), default=DEFAULT_PROFILE, show_default=True,
              help="How much to record beyond what the detections need.")
def generate_cmd(profile: str) -> None:
    """Print a commented audit policy covering CIS 3.2.2 and kubetrail's needs."""
    click.echo(generate(profile), nl=False)


@policy.command("lint")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@json_option
@click.option("--fail-on", type=click.Choice(["warn", "error"]), default="error", show_default=True,
              help="Exit 1 when a finding has this severity or worse.")
@click.option("--save-to", "save_to", type=click.Path(file_okay=False), default=None,
              help="Also save the result in this data directory (DATA/posture/) for `kubetrail serve`.")
def lint_cmd(policy_file: str, as_json: bool, fail_on: str, save_to: str | None) -> None:
    """Coverage matrix over security-relevant requests, leaks and rule mistakes."""
    report = lint_policy(load_policy_file(policy_file))
    if save_to:
        from kubetrail.web.posture import save

        save(save_to, "policy-lint", policy_file, {
            "findings": [{"severity": f.severity, "code": f.code, "where": f.where, "message": f.message}
                         for f in report.findings],
            "coverage": [row.to_json() for row in report.coverage],
            "summary": {"errors": report.count("error"), "warnings": report.count("warn"),
                        "info": report.count("info"), "leaks": len(report.leaks)}}, not report.fails(fail_on))
    if as_json:
        for row in report.coverage:
            _emit(row.to_json())
        for f in report.findings:
            _emit({"kind": "finding", "severity": f.severity, "code": f.code, "where": f.where, "message": f.message})
        _emit({"kind": "summary", "errors": report.count("error"), "warnings": report.count("warn"),
               "info": report.count("info"), "leaks": len(report.leaks), "fail_on": fail_on,
               "failed": report.fails(fail_on)})
    else:
        if report.coverage:
            click.echo(f"{'VERDICT':8} {'CLASS':22} {'LEVEL':34} {'NEEDS':16} RULES")
            for row in report.coverage:
                rules = ",".join("-" if r is None else str(r) for r in row.rules)
                click.echo(f"{row.verdict:8} {row.cls.id:22} {row.level_text:34} {row.cls.need.wire:16} {rules}")
            click.echo()
        for f in report.findings:
            click.echo(f"[{f.severity.upper()}] {f.where}: {f.message}" if f.where else f"[{f.severity.upper()}] "
                       f"{f.message}")
        click.echo(f"{report.count('error')} errors, {report.count('warn')} warnings, {len(report.leaks)} leaks")
    exit_with(FINDINGS if report.fails(fail_on) else OK)


@policy.command("simulate")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@click.argument("more_events", nargs=-1, type=click.Path())
@click.option("--events", "events", multiple=True, type=click.Path(),
              help="Audit event files in any format `ingest` reads (files after the option count too).")
@json_option
@click.option("--lenient", is_flag=True, help="Ignore unknown policy fields, as the apiserver does.")
def simulate_cmd(policy_file: str, more_events: tuple[str, ...], events: tuple[str, ...], as_json: bool,
                 lenient: bool) -> None:
    """What POLICY would record of recorded events, and what would be lost."""
    paths = [*events, *more_events]
    if not paths:
        raise click.UsageError("give event files with --events FILE...")
    sim = Simulator(_usable(policy_file, lenient))
    for item in read_paths(paths):
        if not isinstance(item, Decoded):
            sim.summary.rejected_inputs += 1
            continue
        row = sim.row(item.event)
        if as_json:
            _emit(row.to_json())
        else:
            where = row.resource + (f"/{row.subresource}" if row.subresource else "") if row.resource else row.path
            rule = "-" if row.rule_index is None else str(row.rule_index)
            click.echo(f"{'kept' if row.stage_kept else 'LOST':4} {row.level:15} rule {rule:>3}  {row.stage:16} "
                       f"{row.verb:8} {where:40} {row.user}  {row.auditID}")
    s = sim.summary
    if as_json:
        _emit(s.to_json())
        return
    click.echo(f"\n{s.events} events: {s.kept} kept, {s.lost} lost, {s.downgraded} kept at a lower level than "
               f"recorded; {s.rejected_inputs} inputs were not audit events")
    for title, counter in (("lost by reason", s.lost_by_reason), ("lost by rule", s.lost_by_rule),
                           ("lost security events", s.lost_by_class),
                           ("security events kept at a lower level (less body)", s.downgraded_by_class)):
        if counter:
            click.echo(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counter.most_common()))


def _split_resource(resource: str, group: str | None) -> tuple[str, str, str]:
    """``pods/exec``, ``deployments.apps``, ``certificatesigningrequests.certificates.k8s.io/approval``."""
    res, _, sub = resource.partition("/")
    if "." in res and group is None:
        res, _, group = res.partition(".")
    return res, sub, group or ""


@policy.command("explain")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@click.option("--user", help="Authenticated user name (the impersonator, when impersonating).")
@click.option("--group", "groups", multiple=True, help="A group of the user (repeat).")
@click.option("--unauthenticated", is_flag=True, help="A request that failed authentication (no user).")
@click.option("--verb", required=True, help="get list watch create update patch delete deletecollection; "
                                            "lower-case HTTP method for --path.")
@click.option("--resource", help="pods, pods/exec, deployments.apps, tokenreviews.authentication.k8s.io ...")
@click.option("--subresource", default="")
@click.option("--api-group", default=None, help="API group ('' = core) when --resource has no .group suffix.")
@click.option("--namespace", default="", help="Namespace ('' = cluster-scoped).")
@click.option("--name", default="", help="Object name (a create has none).")
@click.option("--path", help="URL path of a non-resource request, e.g. /healthz.")
@json_option
@click.option("--lenient", is_flag=True, help="Ignore unknown policy fields, as the apiserver does.")
def explain_cmd(policy_file: str, user: str | None, groups: tuple[str, ...], unauthenticated: bool, verb: str,
                resource: str | None, subresource: str, api_group: str | None, namespace: str, name: str,
                path: str | None, as_json: bool, lenient: bool) -> None:
    """Which rule of POLICY a request hits, at what level, and why earlier rules do not match."""
    if bool(resource) == bool(path):
        raise click.UsageError("give exactly one of --resource or --path")
    if (user is None) != unauthenticated:
        raise click.UsageError("give --user (with --group ...) or --unauthenticated")
    who = None if unauthenticated else UserInfo(user or "", groups)
    if name and verb == "create" and not subresource and "/" not in (resource or ""):
        # the apiserver's request info has no name for a create (it is in the body), so
        # resourceNames rules never match one
        click.echo(f"note: --name {name!r} ignored: a create request carries no name", err=True)
        name = ""
    if resource:
        res, sub, group = _split_resource(resource, api_group)
        attrs = RequestAttrs(who, verb, True, group, res, subresource or sub, namespace, name)
    else:
        attrs = RequestAttrs(who, verb, False, path=path or "")
    result = explain_request(Evaluator(_usable(policy_file, lenient)), attrs)
    if as_json:
        _emit(result.to_json())
        return
    for step in result.steps:
        click.echo(f"rules[{step.rule_index}] ({step.level}): {'MATCH' if step.matched else 'no'} - {step.reason}")
    d = result.decision
    if d.rule_index is None:
        click.echo("no rule matches: level None, nothing is recorded")
    else:
        kept = [s for s in ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic") if d.keeps(s)]
        click.echo(f"=> rules[{d.rule_index}]: level {d.level.wire}; stages recorded: {', '.join(kept) or 'none'}"
                   f"; omitManagedFields {str(d.omit_managed_fields).lower()}")


@click.group("check")
def check() -> None:
    """Check that audit logging is really on."""


@check.command("apiserver")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Static-pod manifest of kube-apiserver.")
@click.option("--cmdline", help="The kube-apiserver command line (ps output or /proc/PID/cmdline).")
@click.option("--kubeadm-config", type=click.Path(dir_okay=False), help="kubeadm ClusterConfiguration file.")
@click.option("--eks-cluster-json", type=click.Path(dir_okay=False), help="aws eks describe-cluster output.")
@click.option("--aks-diagnostic-settings-json", type=click.Path(dir_okay=False),
              help="az monitor diagnostic-settings list output.")
@click.option("--gke-cluster-json", type=click.Path(dir_okay=False), help="gcloud container clusters describe output.")
@click.option("--kubernetes-version", help="e.g. 1.36 (taken from the manifest image or kubeadm config if absent).")
@click.option("--benchmark", type=click.Choice(sorted(api.CIS_FLAG_IDS)), help="CIS numbering (default: by version).")
@click.option("--root", default="", help="Read the policy file under this directory (a node's disk mounted here).")
@click.option("--save-to", "save_to", type=click.Path(file_okay=False), default=None,
              help="Also save the result in this data directory (DATA/posture/) for `kubetrail serve`.")
@json_option
def apiserver_cmd(manifest: str | None, cmdline: str | None, kubeadm_config: str | None,
                  eks_cluster_json: str | None, aks_diagnostic_settings_json: str | None,
                  gke_cluster_json: str | None, kubernetes_version: str | None, benchmark: str | None, root: str,
                  save_to: str | None, as_json: bool) -> None:
    """kube-bench style [PASS]/[FAIL]/[WARN] checks of the audit configuration; exit 1 on any FAIL."""
    given = [x for x in (manifest, cmdline, kubeadm_config, eks_cluster_json, aks_diagnostic_settings_json,
                         gke_cluster_json) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --manifest, --cmdline, --kubeadm-config, --eks-cluster-json, "
                               "--aks-diagnostic-settings-json, --gke-cluster-json")
    version = api.parse_version(kubernetes_version) if kubernetes_version else None
    if eks_cluster_json:
        checks, what = managed.check_eks(managed.load_json(eks_cluster_json)), "EKS control plane"
    elif aks_diagnostic_settings_json:
        checks, what = managed.check_aks(managed.load_json(aks_diagnostic_settings_json)), "AKS diagnostic settings"
    elif gke_cluster_json:
        checks, what = managed.check_gke(managed.load_json(gke_cluster_json)), "GKE cluster"
    else:
        cfg = (api.from_manifest(manifest, version) if manifest else api.from_kubeadm(kubeadm_config, version)
               if kubeadm_config else api.from_cmdline(cmdline or "", version))
        benchmark = benchmark or api.benchmark_for(cfg.version)
        checks, what = api.check_apiserver(cfg, root), f"kube-apiserver audit configuration ({cfg.source})"
    bench = benchmark or api.DEFAULT_BENCHMARK
    if save_to:
        from kubetrail.web.posture import save

        save(save_to, "check-apiserver", given[0], {
            "what": what, "benchmark": bench,
            "checks": [{**c.to_json(), "id": c.cis.get(bench) or c.id} for c in checks]},
             not any(c.status == "FAIL" for c in checks))
    _report(checks, what, bench, as_json)
    exit_with(FINDINGS if any(c.status == "FAIL" for c in checks) else OK)


def _report(checks: list[api.Check], what: str, bench: str, as_json: bool) -> None:
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("PASS", "FAIL", "WARN", "INFO")}
    if as_json:
        for c in checks:
            _emit({**c.to_json(), "benchmark_id": c.cis.get(bench) or next(iter(c.cis.values()), None)})
        _emit({"summary": {k.lower(): v for k, v in counts.items()}, "benchmark": bench})
        return
    click.echo(f"[INFO] {what} - {bench}")
    label = {id(c): c.cis.get(bench) or next(iter(c.cis.values()), c.id) for c in checks}
    for c in checks:
        click.echo(f"[{c.status}] {label[id(c)]} {c.title}")
        if c.detail:
            click.echo(f"       {c.detail}")
    todo = [c for c in checks if c.status in ("FAIL", "WARN") and c.remediation]
    if todo:
        click.echo("\n== Remediations ==")
        for c in todo:
            click.echo(f"{label[id(c)]} {c.remediation}")
    click.echo("\n== Summary ==")
    for status, n in counts.items():
        click.echo(f"{n} checks {status}")


commands: list[click.Command] = [policy, check]
