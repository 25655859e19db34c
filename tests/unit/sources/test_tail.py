"""The tailer: whole lines only, rotation by rename and copytruncate, resume from a position."""

from __future__ import annotations

import os
import shutil

from kubetrail.sources._tail import Position, Tailer


def read_all(t: Tailer) -> tuple[list[bytes], Position | None]:
    lines: list[bytes] = []
    last = None
    for chunk, pos in t.poll():
        lines.extend(chunk)
        last = pos
    return lines, last


def line(i: int) -> bytes:
    return b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 300)


def following(tmp_path):
    """audit.log with one line, and a tailer that has read it."""
    p = tmp_path / "audit.log"
    p.write_bytes(line(1))
    t = Tailer(str(p), None)
    read_all(t)
    return p, t


def copytruncate(p, copy, then: bytes) -> None:
    """logrotate's copytruncate, then the writer goes on with ``then``."""
    shutil.copyfile(p, copy)
    with open(p, "r+b") as f:
        f.truncate(0)
    with open(p, "ab") as f:
        f.write(then)


def test_partial_line_waits_for_newline(tmp_path) -> None:
    """A half-written line is not returned until its newline arrives."""
    p = tmp_path / "audit.log"
    p.write_bytes(line(1) + b'{"n": 2')
    t = Tailer(str(p), None)
    got, pos = read_all(t)
    assert got == [line(1).rstrip(b"\n")] and pos is not None and pos.offset == len(line(1))
    with open(p, "ab") as f:
        f.write(b', "pad": ""}\n')
    got, _ = read_all(t)
    assert got == [b'{"n": 2, "pad": ""}']
    t.close()


def test_rename_rotation_twice_between_polls(tmp_path) -> None:
    """Two renames before the next poll: both rotated files are read, nothing lost."""
    p, t = following(tmp_path)
    with open(p, "ab") as f:
        f.write(line(2))
    os.rename(p, tmp_path / "audit.log.1")
    p.write_bytes(line(3))
    os.rename(p, tmp_path / "audit.log.2")
    p.write_bytes(line(4))
    got, _ = read_all(t)
    assert sorted(got) == sorted(line(i).rstrip(b"\n") for i in (2, 3, 4))
    t.close()


def test_copytruncate_reads_the_unread_tail_from_the_copy(tmp_path) -> None:
    """copytruncate: lines written after our last read are found in the copy."""
    p, t = following(tmp_path)
    with open(p, "ab") as f:
        f.write(line(2))
    copytruncate(p, tmp_path / "audit.log.1", then=line(3))
    got, _ = read_all(t)
    assert got == [line(2).rstrip(b"\n"), line(3).rstrip(b"\n")]
    t.close()


def test_resume_after_restart_and_rotation(tmp_path) -> None:
    """A saved position finds its file among the rotated siblings after a restart."""
    p = tmp_path / "audit.log"
    p.write_bytes(line(1) + line(2))
    t = Tailer(str(p), None)
    _, pos = read_all(t)
    t.close()
    assert pos is not None
    saved = Position.loads(pos.dumps())
    with open(p, "ab") as f:
        f.write(line(3))
    os.rename(p, tmp_path / "audit.log.1")
    p.write_bytes(line(4))
    t2 = Tailer(str(p), saved)
    got, _ = read_all(t2)
    assert got == [line(3).rstrip(b"\n"), line(4).rstrip(b"\n")]
    t2.close()


def test_copytruncate_of_a_generation_never_seen(tmp_path) -> None:
    """The live file was empty when we opened it; before our next poll it was filled, copied and
    truncated, and new lines were written: the copy is read first, nothing is lost."""
    p, t = following(tmp_path)
    os.rename(p, tmp_path / "audit.log.1")
    p.write_bytes(b"")
    got, _ = read_all(t)  # sees the rename, opens the empty new file
    assert got == []
    with open(p, "ab") as f:
        f.write(line(2))
    copytruncate(p, tmp_path / "audit.log.2", then=line(3))
    got, _ = read_all(t)
    assert got == [line(2).rstrip(b"\n"), line(3).rstrip(b"\n")]
    with open(p, "ab") as f:  # and the rotated files are not read again later
        f.write(line(4))
    got, _ = read_all(t)
    assert got == [line(4).rstrip(b"\n")]
    t.close()


def test_truncation_between_the_check_and_the_read(tmp_path, monkeypatch) -> None:
    """copytruncate lands after the poll checked for rotation but before it read: the chunk of
    the new generation read at the old offset is dropped, and the copy supplies the real tail."""
    p, t = following(tmp_path)
    with open(p, "ab") as f:
        f.write(line(2))
    real = Tailer._rotated
    fired = []

    def rotated_then_copytruncate(self: Tailer) -> bool:
        result = real(self)
        if not fired:
            fired.append(1)
            # the new generation is longer than our offset
            copytruncate(p, tmp_path / "audit.log.1", then=line(3) + line(4) + line(5))
        return result

    monkeypatch.setattr(Tailer, "_rotated", rotated_then_copytruncate)
    got, _ = read_all(t)
    got += read_all(t)[0]
    assert got == [line(i).rstrip(b"\n") for i in (2, 3, 4, 5)]
    t.close()


def test_copytruncate_of_the_new_file_while_the_old_one_drains(tmp_path) -> None:
    """A rename is seen; while the old file's rest is being committed (the generator is suspended),
    the new file is filled, copied and truncated: its first generation comes from the copy."""
    p, t = following(tmp_path)
    with open(p, "ab") as f:
        f.write(line(2))
    os.rename(p, tmp_path / "audit.log.1")
    p.write_bytes(line(3))
    got: list[bytes] = []
    gen = t.poll()
    chunk, _ = next(gen)  # the old file's rest; the pipeline would commit now
    got += chunk
    copytruncate(p, tmp_path / "audit.log.2", then=line(4))
    for chunk, _ in gen:
        got += chunk
    got += read_all(t)[0]
    assert got == [line(i).rstrip(b"\n") for i in (2, 3, 4)]
    t.close()
