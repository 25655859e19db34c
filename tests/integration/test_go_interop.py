"""Go's reference transparency-log code (golang.org/x/mod/sumdb/note and tlog, from Debian's
golang-golang-x-mod-dev) opens kubetrail's checkpoints and checks the CLI's proofs.

The Go program (tests/interop/go/src/kubetrailinterop) is built offline in GOPATH mode; the test
skips only when ``go`` is not installed (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import fixtures_dir, make_event
from kubetrail.trail.checkpoint import Checkpoint, sign_checkpoint
from kubetrail.trail.note import Signer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).parents[2]
GOPATH_SYSTEM = "/usr/share/gocode"


def build(tmp: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (apt-get install golang-go golang-golang-x-mod-dev)")
    if not Path(GOPATH_SYSTEM, "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail("golang-golang-x-mod-dev is not installed but go is")
    env = {**os.environ, "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off",
           "GOPATH": f"{REPO / 'tests/interop/go'}:{GOPATH_SYSTEM}",
           "GOCACHE": os.environ.get("GOCACHE") or os.path.join(tempfile.gettempdir(), "kubetrail-go-cache")}
    out = tmp / "kt-interop"
    r = subprocess.run([go, "build", "-o", str(out), "kubetrailinterop"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def kt(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code in (0, 1), r.output
    return r.stdout


def test_go_reference_code_accepts_kubetrail_checkpoints_and_proofs(tmp_path: Path) -> None:
    binary = build(tmp_path)
    data = str(tmp_path / "data")
    corpus = sorted(str(p) for p in (fixtures_dir() / "corpus").rglob("*")
                    if p.suffix in (".json", ".jsonl", ".log") and "panther" not in str(p) and "original" not in str(p))
    if not corpus:  # no public fixtures here: synthetic events make the same trail shape
        corpus = []
        for part in range(4):
            path = tmp_path / f"synthetic-{part}.log"
            path.write_bytes(b"".join(orjson.dumps(make_event(f"go-{part}-{i}", name=f"o{i}")) + b"\n"
                                      for i in range(15)))
            corpus.append(str(path))
    vkey = kt("keys", "generate", "--origin", "interop.kubetrail.test/log", "--data", data).strip().splitlines()[-1]
    notes = []
    for chunk in (corpus[:1], corpus[1:3], corpus[3:]):
        if chunk:
            kt("ingest", "--no-detect", *chunk, "--data", data)
            notes.append(kt("checkpoint", "--data", data))
    sizes = [int(n.split("\n")[1]) for n in notes]
    n = sizes[-1]
    assert n > 10
    idx = sorted({0, 1, n // 3, n // 2, n - 2, n - 1})
    inclusion = [json.loads(kt("proof", "inclusion", "--index", str(i), "--size", str(n), "--json", "--data", data))
                 for i in idx]
    inclusion += [json.loads(kt("proof", "inclusion", "--index", "0", "--size", str(sizes[0]), "--json",
                                "--data", data))]
    consistency = [json.loads(kt("proof", "consistency", "--old", str(m), "--new", str(n), "--json", "--data", data))
                   for m in (*sizes, 1, n // 2, 0)]
    with sqlite3.connect(Path(data) / "kubetrail.db") as conn:
        leaves = [bytes(h).hex() for (h,) in conn.execute("SELECT hash FROM trail_leaves ORDER BY idx")]
    cp = notes[-1].split("\n")
    forged_root = sign_checkpoint(Checkpoint(cp[0], n, b"\x01" * 32), Signer(cp[0], b"\x05" * 32))
    bad = [notes[-1].replace(f"\n{n}\n", f"\n{n + 1}\n"), forged_root]
    doc = {"vkey": vkey, "checkpoints": notes, "bad_checkpoints": bad, "inclusion": inclusion,
           "consistency": consistency, "leaves": leaves}
    r = subprocess.run([str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["ok"] and summary["roots_recomputed"] == len(set(sizes))


def test_go_reference_code_accepts_the_golden_trail(tmp_path: Path) -> None:
    binary = build(tmp_path)
    v = json.loads((REPO / "tests/data/trail/vectors.json").read_text())
    doc = {"vkey": v["vkey"], "checkpoints": v["checkpoints"], "inclusion": v["inclusion"],
           "consistency": v["consistency"], "leaves": [e["leaf_hash"] for e in v["entries"]],
           "bad_checkpoints": [v["checkpoints"][0].replace("\n64\n", "\n65\n")]}
    r = subprocess.run([str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
