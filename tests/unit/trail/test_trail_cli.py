"""The trail CLI and checkpointer from the outside: keys, auto key, timer checkpoints, proofs, witness."""

from __future__ import annotations

import os
import stat

import orjson
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.store.testing import execute as sql
from kubetrail.testing import make_event
from kubetrail.trail import merkle
from kubetrail.trail.checkpoint import open_checkpoint
from kubetrail.trail.note import Verifier
from kubetrail.trail.proofs import inclusion_proof_for


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.stdout


def write_log(path, n: int, start: int = 0) -> None:
    path.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}", name=f"o{i}")) + b"\n"
                             for i in range(start, start + n)))


def test_keys_generate_show_and_refuse_overwrite(tmp_path) -> None:
    data = str(tmp_path / "d")
    code, out = run("keys", "generate", "--origin", "t.example/log", "--data", data)
    vkey = out.strip().splitlines()[-1]
    assert code == 0 and Verifier.parse(vkey).name == "t.example/log"
    assert stat.S_IMODE(os.stat(os.path.join(data, "trail.key")).st_mode) == 0o600
    assert run("keys", "show", "--data", data) == (0, vkey + "\n")
    assert run("keys", "generate", "--origin", "t.example/log", "--data", data)[0] == 1  # FINDINGS: refused, the key exists
    code, out = run("keys", "generate", "--origin", "t.example/new", "--force", "--data", data)
    assert code == 0 and out.strip() != vkey
    assert run("keys", "generate", "--origin", "bad name", "--force", "--data", data)[0] == 2


def test_ingest_without_key_generates_one_and_signs(tmp_path) -> None:
    data, log = str(tmp_path / "d"), tmp_path / "a.log"
    write_log(log, 5)
    r = CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--data", data])
    assert r.exit_code == 0 and "generated a trail signing key for origin kubetrail.local/" in r.stderr
    code, vkey = run("keys", "show", "--data", data)
    code, note = run("checkpoint", "--data", data)
    cp = open_checkpoint(note, Verifier.parse(vkey.strip()))
    assert cp.size == 5
    code, out = run("checkpoint", "--json", "--data", data)
    doc = orjson.loads(out)
    assert doc["size"] == 5 and doc["root"] == cp.root.hex() and doc["note"] == note


def test_proofs_verify_and_timer_ticks(tmp_path) -> None:
    data = str(tmp_path / "d")
    run("keys", "generate", "--origin", "t.example/log", "--data", data)
    witness = str(tmp_path / "w")
    pipe = open_pipeline(Options(data_dir=data, detect=False, witness_dir=witness), batch_size=7)
    src = SourceRef(stream="t")
    pipe.ingest_items((Decoded(make_event(f"x-{i}"), "event", str(i)) for i in range(40)), src)
    pipe.tick()
    pipe.tick()
    n = sql(pipe.store, "SELECT COUNT(*) FROM trail_checkpoints").fetchone()[0]
    assert n == 6 + 2  # one per batch (40 / 7 -> 6 batches) and one per tick, even when idle
    proof = inclusion_proof_for(pipe.store, 11)
    pipe.close()
    pipe.store.close()
    assert merkle.verify_inclusion(11, 40, bytes.fromhex(proof["leaf_hash"]),
                                   [bytes.fromhex(h) for h in proof["hashes"]], bytes.fromhex(proof["root"]))
    code, out = run("proof", "inclusion", "--index", "3", "--size", "21", "--json", "--data", data)
    p = orjson.loads(out)
    assert p["checkpoint"] is not None and p["size"] == 21
    assert merkle.verify_inclusion(3, 21, bytes.fromhex(p["leaf_hash"]), [bytes.fromhex(h) for h in p["hashes"]],
                                   bytes.fromhex(p["root"]))
    code, out = run("proof", "consistency", "--old", "7", "--new", "40", "--json", "--data", data)
    c = orjson.loads(out)
    assert merkle.verify_consistency(7, 40, bytes.fromhex(c["old_root"]), bytes.fromhex(c["new_root"]),
                                     [bytes.fromhex(h) for h in c["hashes"]])
    code, out = run("proof", "consistency", "--old", "0", "--new", "40", "--json", "--data", data)
    assert orjson.loads(out)["hashes"] == []
    assert run("proof", "inclusion", "--index", "40", "--json", "--data", data)[0] == 2
    assert run("proof", "consistency", "--old", "41", "--new", "40", "--json", "--data", data)[0] == 2
    assert run("verify", "--witness", witness, "--data", data)[0] == 0
    assert len(os.listdir(os.path.join(witness, os.listdir(witness)[0]))) == 6 + 1  # distinct sizes + vkey


def test_verify_with_a_pinned_key_and_no_store(tmp_path) -> None:
    data = str(tmp_path / "d")
    log = tmp_path / "a.log"
    write_log(log, 3)
    run("ingest", str(log), "--no-detect", "--data", data)
    other = str(tmp_path / "o")
    _, vkey = run("keys", "generate", "--origin", "someone.else/log", "--data", other)
    code, out = run("verify", "--json", "--key", vkey.strip(), "--data", data)
    assert code == 1 and orjson.loads(out) == {"ok": False, "first_bad_index": 0, "reason": "bad-signature"}
    assert run("verify", "--data", str(tmp_path / "nothing"))[0] == 2


def test_store_written_before_the_trail_existed(tmp_path) -> None:
    """Entries without tree rows or checkpoints (an older kubetrail): verify builds the tree and warns."""
    from kubetrail.stages.extract import to_record
    from kubetrail.store.sqlite import Store

    data = str(tmp_path / "d")
    run("keys", "generate", "--origin", "t.example/log", "--data", data)
    store = Store.open(data)
    store.append([to_record(Decoded(make_event(f"old-{i}"), "event", str(i)), SourceRef(stream="t"))
                  for i in range(9)])
    store.close()
    r = CliRunner().invoke(cli, ["verify", "--json", "--data", data])
    assert r.exit_code == 0 and orjson.loads(r.stdout)["size"] == 9 and "no signed checkpoint" in r.stderr
    code, note = run("checkpoint", "--data", data)
    assert code == 0 and note.split("\n")[1] == "9"
