"""Planted secrets are in no byte kubetrail writes or sends (issue 10, "Done means").

27 shapes real clusters log credentials in (``secret_cases.SHAPES``: exec arguments, query
parameters, Authorization headers in annotations, kubeconfigs and properties files in ConfigMaps,
env vars, flags, CRD fields, Secrets, last-applied specs, JWTs, private keys, docker configs,
well-known token formats, percent-encoded callbacks) × 13 delivery formats (every file format,
GKE LogEntries and the webhook): 351 distinct secrets. After ``ingest`` (a real process) and the
webhook, with detection and a rule that prints every field a rule can print, and delivery to every
sink (stdout, a JSON lines file, and real local HTTP servers standing in for a webhook receiver,
Slack and Alertmanager), none of them — nor its base64, base64url or percent-encoded form, nor the
credential as its shape spells it — is in the store (bodies decompressed), any file of the data
directory, any output of the commands, or any request a sink received. The must-keep list (image
names, imagePullSecret names, SealedSecret specs, ExternalSecret references, RBAC subjects) is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from hostile_cases import wrap
from secret_cases import MUST_KEEP, Planted, forms, keep_events, planted
from webhook_client import WebhookClient

from kubetrail.cli import cli
from kubetrail.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~700 alerts delivered over HTTP: ~5 s idle

LINE_FORMATS = ["raw", "eventlist", "cri", "docker", "eks-message", "eks-subscription", "aks-string", "aks-object",
                "aks-records"]
ECHO_RULE = """\
- rule: Planted Echo
  desc: prints every field a rule can print about a request (the worst case for what reaches a sink)
  condition: ka.user.name in ("planter@example.com", "system:anonymous")
  output: >-
    echo uri=%ka.uri param=%ka.uri.param[command] cmd=%kt.exec.command user=%ka.user.name
    req=%jevt.value[/requestObject] resp=%jevt.value[/responseObject] ann=%jevt.value[/annotations]
  priority: WARNING
  source: k8s_audit
  tags: [k8s]
"""


class NoAliases(yaml.SafeDumper):
    """gcloud prints every document in full: no anchors for objects that appear twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class Recorder:
    """A local HTTP server standing in for a third party (webhook receiver, Slack, Alertmanager)."""

    def __init__(self, reply: bytes = b"ok") -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gke_entry(p: Planted) -> dict[str, Any]:
    ev = p.event
    ref = ev.get("objectRef", {})
    group = (ref.get("apiGroup") or "core").split(".")[0]
    method = f"io.k8s.{group}.v1.{ref.get('resource', 'pods')}" + \
        (f".{ref['subresource']}" if ref.get("subresource") else "") + f".{ev['verb']}"
    pp: dict[str, Any] = {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
                          "methodName": method, "resourceName": ev["requestURI"].lstrip("/"),
                          "authenticationInfo": {"principalEmail": ev["user"]["username"]},
                          "requestMetadata": {"callerIp": "10.0.0.1"}, "status": {"code": 0}}
    for src, dst in (("requestObject", "request"), ("responseObject", "response")):
        if isinstance(ev.get(src), dict):
            pp[dst] = {"@type": "x", **ev[src]}
    return {"insertId": ev["auditID"], "timestamp": ev["stageTimestamp"], "labels": ev.get("annotations", {}),
            "protoPayload": pp, "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-keep"}}}


def write_inputs(root: Path) -> tuple[list[str], list[Planted], list[Planted]]:
    """One file per format (one planted set each, distinct secrets); returns the files, everything
    planted in files, and the set kept for the webhook."""
    paths: list[str] = []
    everything: list[Planted] = []
    seed = 100
    for fmt in LINE_FORMATS:
        seed += 1
        group = planted(seed)
        everything += group
        path = root / f"{fmt}.log"
        path.write_bytes(b"".join(wrap(fmt, orjson.dumps(p.event)) + b"\n" for p in group))
        paths.append(str(path))
    for fmt in ("yaml", "pretty", "gke"):
        seed += 1
        group = planted(seed)
        everything += group
        if fmt == "yaml":
            path = root / "gcloud.yaml"
            path.write_text("".join("---\n" + yaml.dump(p.event, Dumper=NoAliases, sort_keys=False) for p in group))
        elif fmt == "pretty":
            path = root / "list.json"
            path.write_bytes(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                           "items": [p.event for p in group]}, option=orjson.OPT_INDENT_2))
        else:
            path = root / "gke.log"
            path.write_bytes(b"".join(orjson.dumps(gke_entry(p)) + b"\n" for p in group))
        paths.append(str(path))
    keep = root / "keep.log"
    keep.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in keep_events()))
    paths.append(str(keep))
    return paths, everything, planted(seed + 1)


def everything_written(data_dir: Path) -> bytes:
    out = b""
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            out += p.read_bytes()
    with open_store(str(data_dir), create=False, readonly=True) as store:
        for record in store.records_by_index(0, store.size()):
            out += record.body + orjson.dumps([r.path for r in record.redactions])
    return out


def test_planted_secrets_reach_no_byte_written_or_sent(tmp_path: Path) -> None:
    hook, slack, am = Recorder(), Recorder(), Recorder(b"")
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "echo.yaml").write_text(ECHO_RULE)
    (data / "detect.yaml").write_text(yaml.safe_dump({
        "rules": [str(tmp_path / "echo.yaml")], "rate_limit": {"max_alerts": 100000, "window_secs": 1},
        "suppress": {"rules": {"Planted Echo": {"window_secs": 0}}},  # one alert per event, not aggregated
        "sinks": [{"name": "out", "type": "stdout"}, {"name": "file", "type": "jsonl", "path": str(tmp_path / "a.jsonl")},
                  {"name": "hook", "type": "webhook", "url": hook.url + "/hook"},
                  {"name": "slack", "type": "slack", "url": slack.url + "/services/T/B/X"},
                  {"name": "am", "type": "alertmanager", "url": am.url}]}))
    paths, in_files, via_webhook = write_inputs(tmp_path)
    outputs = b""
    try:
        env = {**os.environ, "KUBETRAIL_DATA": str(data)}
        r = subprocess.run([sys.executable, "-m", "kubetrail", "ingest", *paths], capture_output=True, env=env,
                           timeout=300)
        outputs += r.stdout + r.stderr
        assert b"Traceback" not in r.stderr and r.returncode in (0, 1), r.stderr.decode()[-3000:]
        with WebhookClient(tmp_path / "hook", detect=True, data_dir=str(data)) as client:
            body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                 "items": [p.event for p in via_webhook]})
            status, answer = client.post(body)
            assert status == 200 and answer["events"] == len(via_webhook), answer
        runner = CliRunner()
        for args in (["alerts", "deliver", "--now"], ["alerts", "--json"], ["query", "--json", "--limit", "100000"],
                     ["stats"], ["creds", "list", "--json"], ["alerts", "sinks"]):
            res = runner.invoke(cli, [*args, "--data", str(data)])
            assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.exception)
            outputs += res.stdout_bytes + res.stderr_bytes if hasattr(res, "stderr_bytes") else res.stdout_bytes
        keys = [orjson.loads(line)["key"] for line in runner.invoke(
            cli, ["query", "--json", "--limit", "100000", "--data", str(data)]).stdout.splitlines()]
        for key in keys[::12]:  # show renders what query and the store hold; a sample of every shape
            outputs += runner.invoke(cli, ["show", key, "--json", "--data", str(data)]).stdout_bytes
        for alert in runner.invoke(cli, ["alerts", "--json", "--data", str(data)]).stdout.splitlines()[::30]:
            outputs += runner.invoke(cli, ["alerts", "show", str(orjson.loads(alert)["id"]), "--json",
                                           "--data", str(data)]).stdout_bytes
    finally:
        for rec in (hook, slack, am):
            rec.close()
    sent = b"".join(hook.bodies + slack.bodies + am.bodies)
    with open_store(str(data), create=False, readonly=True) as store:
        ids = {r.meta.audit_id for r in store.records_by_index(0, store.size())}
    lost = [p.event["auditID"] for p in in_files + via_webhook if p.event["auditID"] not in ids]
    assert not lost, f"planted events not stored: {lost[:20]}"
    assert hook.bodies and slack.bodies and am.bodies, "every HTTP sink received alerts"
    echoes = [json.loads(b) for b in hook.bodies]
    assert sum("Planted Echo" in str(b) for b in echoes) >= len(in_files), "the echo rule fired for each event"
    everything = everything_written(data) + outputs + sent + _decoded(sent)
    planted_all = in_files + via_webhook
    assert len({p.secret for p in planted_all}) == len(planted_all) >= 100
    leaks = [f"{p.shape}: {needle[:24]}…" for p in planted_all for needle in (*forms(p.secret), *p.extra)
             if needle.encode() in everything]
    assert not leaks, f"{len(leaks)} leaks: {leaks[:15]}"
    missing = [k for k in MUST_KEEP if k.encode() not in everything_written(data)]
    assert not missing, f"evidence lost: {missing}"


def _decoded(sent: bytes) -> bytes:
    """What a receiver would see after decoding JSON string escapes (\\u003c and the like)."""
    return sent.decode("unicode_escape", "replace").encode("utf-8", "replace")


def test_the_generator_plants_distinct_secrets_in_every_shape() -> None:
    a, b = planted(1), planted(2)
    assert len(a) == len({p.shape for p in a}) >= 25
    assert not {p.secret for p in a} & {p.secret for p in b}
    assert all(p.secret in forms(p.secret) and len(forms(p.secret)) >= 2 for p in a)
