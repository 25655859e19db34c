"""Signed notes, keys and checkpoints against the Go sumdb/note and C2SP vectors in shared/fixtures."""

from __future__ import annotations

import base64
import json

import pytest

from kubetrail.testing import fixtures_dir
from kubetrail.trail.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from kubetrail.trail.note import NoteError, Signer, Verifier, open_note, parse_note, sign_note

TLOG = fixtures_dir() / "tlog"
pytestmark = pytest.mark.needs_fixtures


def load(name: str) -> dict:
    return json.loads((TLOG / name).read_text())


def test_go_keys_and_signatures_byte_for_byte() -> None:
    d = load("sumdb-note.json")
    peter, enoch = d["keys"]["PeterNeumann"], d["keys"]["EnochRoot"]
    for k in (peter, enoch):
        s = Signer.parse(k["skey"])
        assert s.encode() == k["skey"] and s.verifier().encode() == k["vkey"]
        assert Verifier.parse(k["vkey"]) == s.verifier()
    assert sign_note(d["text"], Signer.parse(peter["skey"])) == d["signed_by_peter"]
    assert sign_note(d["text"], Signer.parse(peter["skey"]), Signer.parse(enoch["skey"])) == \
        d["signed_by_peter_and_enoch"]


def test_go_open_cases() -> None:
    d = load("sumdb-note.json")
    vs = {name: Verifier.parse(k["vkey"]) for name, k in d["keys"].items()}
    for case in d["open_cases"]:
        msg = bytes.fromhex(case["msg_hex"]) if case.get("msg_hex") else case["msg"].encode()
        verifiers = [vs[n] for n in case["verifiers"]]
        if case["want"] == "ok":
            opened = open_note(msg, verifiers)
            assert [s.name for s in opened.verified] == case["verified"]
            assert [s.name for s in opened.unverified] == case["unverified"]
        else:
            with pytest.raises(NoteError):
                open_note(msg, verifiers)


def test_bad_verifier_keys() -> None:
    d = load("sumdb-note.json")
    good = d["keys"]["PeterNeumann"]["vkey"]
    for bad in d["bad_verifier_keys"]:
        with pytest.raises(NoteError):
            Verifier.parse(bad)
    for i in range(len(good)):
        for sub in (good[:i], good[i + 1:]):
            with pytest.raises(NoteError):
                Verifier.parse(sub)
        changed = good[:i] + chr(ord(good[i]) + 1) + good[i + 1:]
        with pytest.raises(NoteError):
            Verifier.parse(changed)


def test_more_key_pairs_and_c2sp_example() -> None:
    for pair in load("note-keys.json")["pairs"]:
        assert Signer.parse(pair["skey"]).verifier().encode() == pair["vkey"]
    ex = load("c2sp-and-format-examples.json")
    opened = open_note(ex["signed_note_example"]["note"], [Verifier.parse(ex["signed_note_example"]["vkey"])])
    assert opened.text == "This is an example message.\n"
    text, sigs = parse_note(ex["checkpoint_example_no_key"]["note"])
    want = ex["checkpoint_example_no_key"]["parse_want"]
    cp = Checkpoint.parse(text)
    assert (cp.origin, cp.size, base64.b64encode(cp.root).decode()) == \
        (want["origin"], want["size"], want["root_b64"])
    assert sigs[0].key_id.hex() == want["key_id_hex"] and len(sigs[0].signature) == want["sig_len"]
    _, cosigned = parse_note(ex["cosigned_checkpoint_example_no_key"])
    assert cosigned[1].key_id.hex() == ex["cosigned_checkpoint_example_parse"]["witness_key_id_hex"]


def test_checkpoint_sign_open_and_refusals() -> None:
    s = Signer("example.com/log", b"\x02" * 32)
    cp = Checkpoint("example.com/log", 5, b"\x03" * 32)
    note = sign_checkpoint(cp, s)
    assert note.startswith("example.com/log\n5\nAwMD") and "\n\n\u2014 example.com/log " in note
    assert open_checkpoint(note, s.verifier()) == cp
    with pytest.raises(NoteError):
        sign_checkpoint(Checkpoint("other.example/log", 5, b"\x03" * 32), s)
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n5\n", "\n6\n"), s.verifier())
    with pytest.raises(NoteError):
        open_checkpoint(note, Signer("example.com/log", b"\x04" * 32).verifier())
    for body in ("o\n05\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n", "o\n5\nAwMD\n",
                 "o\n5\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\nextension\n", "o\n-1\nx\n"):
        with pytest.raises(NoteError):
            Checkpoint.parse(body)
    for name in ("", "a b", "a+b"):
        with pytest.raises(NoteError):
            Signer.generate(name)
