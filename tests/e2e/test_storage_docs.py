"""docs/storage.md's shell examples, run as written: on a SQLite file and on a real PostgreSQL (the
docs' ``$PG_URL``), in a workspace with an ``audit.log``. Each command must exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from kubetrail.testing import make_event

DOC = Path(__file__).resolve().parents[2] / "docs" / "storage.md"

pytestmark = pytest.mark.integration


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


def test_storage_doc_examples_run(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "audit.log").write_bytes(b"".join(
        orjson.dumps(make_event(f"doc-{i}", user="alice" if i % 2 else "bob", name=f"o{i}",
                                time=f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z")) + b"\n" for i in range(300)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETRAIL_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PG_URL=pg_url, NO_COLOR="1")
    blocks = sh_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        r = subprocess.run(["bash", "-euc", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"{block}\n---\n{r.stdout}\n{r.stderr}"
    assert (tmp_path / "trail" / "kubetrail.db").exists() and (tmp_path / "trail" / "trail.key").exists()
    assert (tmp_path / "collector" / "trail.key").exists()  # the PostgreSQL store's key stays in --data
