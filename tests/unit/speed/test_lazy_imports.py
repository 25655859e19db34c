"""What `kubetrail ingest` (and every command) does not use is not imported at its start (issue 18,
fifth pass): asyncio (the collector and the broker sinks), the agent's WAL (``crc32c``, whose
``__init__`` reads its version through ``importlib.metadata``), ``cryptography.x509`` (decoding a
CSR or certificate), ssl and the webhook's HTTP server, inotify (the CRI source), and for
``kubetrail --help`` the record types (msgspec). Each is imported where it is used; the tests
below check both halves: absent from the start-up, present and working on the path that needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Modules (or whole packages, by their first name) the ingest start-up must not import.
LAZY_PACKAGES = ("asyncio", "cryptography", "crc32c", "ssl", "inotify_simple", "http")
LAZY_MODULES = ("importlib.metadata", "kubetrail.buffer.wal", "kubetrail.buffer.frames",
                "kubetrail.buffer.recovery", "kubetrail.buffer.policy", "kubetrail.sources._webhook_http",
                "kubetrail.sinks.forward")

PROBE = """
import json, sys
{imports}
lazy = [m for m in sys.modules if m.split(".")[0] in {packages!r} or m in {modules!r}]
print(json.dumps(sorted(lazy)))
"""


def _imported(imports: str, packages: tuple[str, ...] = LAZY_PACKAGES,
              modules: tuple[str, ...] = LAZY_MODULES) -> list[str]:
    code = PROBE.format(imports=imports, packages=packages, modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    result: list[str] = json.loads(out.stdout.splitlines()[-1])  # after what the command printed
    return result


def test_the_ingest_start_up_imports_none_of_them() -> None:
    assert _imported("import kubetrail.cli, kubetrail.cli.ingest, kubetrail.pipeline, kubetrail.config") == []


def test_a_whole_ingest_imports_none_of_them(tmp_path: Path) -> None:
    """Not at start-up and not later either: a one-process ingest of events without a CSR, with
    detection and credentials on, the trail signed (its key generated), the store written and the
    metrics moved (kept for a registry that nothing asks for).
    (``cryptography``'s Ed25519 is used to sign: only ``x509`` and ``serialization`` must stay out.)"""
    from kubetrail.testing import make_event

    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(make_event(f"00000000-0000-0000-0000-{i:012d}")) + "\n" for i in range(50)))
    imports = f"""
import sys
from kubetrail.cli import main
sys.argv = ["kubetrail", "ingest", {str(log)!r}, "--data", {str(tmp_path / "data")!r}, "--no-progress",
            "--workers", "0"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""
    # nothing reads the metrics: prometheus_client (and the http and ssl modules it brings) stays out
    packages = ("asyncio", "crc32c", "inotify_simple", "ssl", "http", "prometheus_client")
    modules = LAZY_MODULES + ("cryptography.x509", "cryptography.hazmat.primitives.serialization")
    assert _imported(imports, packages, modules) == []
    assert (tmp_path / "data" / "trail.key").exists()


def test_help_imports_no_record_type() -> None:
    assert _imported("import kubetrail.cli", ("msgspec",), ("kubetrail.record",)) == []


def test_the_package_still_exports_the_record_types() -> None:
    import kubetrail
    from kubetrail import record

    for name in ("AuditMeta", "Batch", "Record", "Redaction", "SourceRef"):
        assert getattr(kubetrail, name) is getattr(record, name)
    with pytest.raises(AttributeError):
        _ = kubetrail.no_such_name  # type: ignore[attr-defined]


def test_the_buffer_package_still_exports_the_wal() -> None:
    import kubetrail.buffer as buffer
    from kubetrail.buffer import frames, policy, recovery, wal

    assert buffer.Wal is wal.Wal and buffer.WalEntry is wal.WalEntry and buffer.WalStatus is wal.WalStatus
    assert buffer.inspect is wal.inspect and buffer.SealPoint is frames.SealPoint
    assert buffer.LOSS_KIND == policy.LOSS_KIND and buffer.WhenFull == policy.WhenFull
    assert recovery.__name__ == "kubetrail.buffer.recovery"  # a submodule, not a lazy name
    with pytest.raises(AttributeError):
        _ = buffer.no_such_name  # type: ignore[attr-defined]


def test_a_buffer_config_opens_its_wal(tmp_path: Path) -> None:
    from kubetrail.buffer import BufferConfig, Wal

    wal = BufferConfig(max_bytes=1 << 20).open(str(tmp_path / "buffer"))
    try:
        assert isinstance(wal, Wal)
    finally:
        wal.close()


# -- metrics: prometheus_client only when something reads them -------------------------------------

EMIT_ALL = """
import dataclasses, json, sys, time, typing
time.time = lambda: 1_700_000_000.0  # the timestamp gauges and the checkpoint's age: the same in every run
from kubetrail import telemetry

mode = sys.argv[1]
if mode == "at-once":
    telemetry._metrics()  # the registry first: every change below is applied as it is made
elif mode == "queue-of-5":
    telemetry._PENDING_MAX = 5  # the registry is built by the fifth change, mid-way


def sample(cls, n):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.name == "code":
            values[f.name] = 200 + n
        elif hint is int or hint == (int | None):
            values[f.name] = 3 * n + 1
        elif hint is float:
            values[f.name] = 0.004 * n + 0.001
        else:
            values[f.name] = f"v{n % 2}"
    return cls(**values)


for n in (1, 5, 2, 0, 7):  # a gauge keeps the last value set, whatever the order of the others
    for cls in telemetry.events():
        if cls.__name__ == "WebhookConnectionRefused":
            for reason in typing.get_args(telemetry.WebhookRefusal):
                telemetry.emit(cls(reason))
        else:
            telemetry.emit(sample(cls, n))
telemetry.emit_commit([], [], 2, 1, 0.02, 40, source="s")
before = "prometheus_client" in sys.modules
text = telemetry.render()[0].decode()
print(json.dumps([before, [line for line in text.splitlines() if line.startswith("kubetrail_")]]))
"""


def _emit_all(mode: str) -> tuple[bool, list[str]]:
    out = subprocess.run([sys.executable, "-c", EMIT_ALL, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    imported, lines = json.loads(out.stdout)
    return imported, lines


def test_metric_changes_kept_for_later_leave_the_registry_as_changes_applied_at_once() -> None:
    """Every event class emitted several times: the exposition is the same whether the registry
    existed before (changes applied at once, as before this pass), was built by the first render
    (every change replayed), or was built mid-way by a full queue."""
    imported, at_once = _emit_all("at-once")
    assert imported and len(at_once) > 50
    assert any(line.startswith("kubetrail_trail_checkpoint_age_seconds ") for line in at_once)
    imported, later = _emit_all("later")
    assert not imported  # emitting alone never imported prometheus_client
    assert later == at_once
    imported, mid_way = _emit_all("queue-of-5")
    assert imported and mid_way == at_once


REFUSED = """
import json, sys
from kubetrail import telemetry
refused = []
for call in (lambda: telemetry._counter("kubetrail_source_records_total", "only-one-label"),
             lambda: telemetry._counter("kubetrail_no_such_metric_total"),
             lambda: telemetry._counter("kubetrail_webhook_events_total").inc(-1),
             lambda: telemetry._gauge("kubetrail_trail_size_leaves").set(None),
             lambda: telemetry._histogram("kubetrail_store_commit_duration_seconds").observe("x")):
    try:
        call()
    except (KeyError, ValueError, TypeError) as exc:
        refused.append(type(exc).__name__)
print(json.dumps([refused, "prometheus_client" in sys.modules, len(telemetry._PENDING)]))
"""


def test_a_change_the_registry_would_refuse_is_refused_at_once() -> None:
    out = subprocess.run([sys.executable, "-c", REFUSED], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert json.loads(out.stdout) == [["ValueError", "KeyError", "ValueError", "TypeError", "ValueError"], False, 0]
