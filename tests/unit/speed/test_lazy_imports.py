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
    detection and credentials on, the trail signed (its key generated) and the store written.
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
    # (prometheus_client, imported at the first emit, brings ssl and http: those two are not checked here)
    packages = ("asyncio", "crc32c", "inotify_simple")
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
