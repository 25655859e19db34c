"""An over-long line without a newline holds bounded memory and costs one line, never the stream."""

from __future__ import annotations

from kubetrail.sources._tail import Tailer

from .test_tail import read_all as poll


def test_a_line_past_the_bound_keeps_only_its_head_while_it_grows(tmp_path) -> None:
    p = tmp_path / "audit.log"
    p.write_bytes(b"first\n" + b"A" * 5000)
    t = Tailer(str(p), None, max_bytes=512, max_line_bytes=1000)
    got, pos = poll(t)
    assert got == [b"first"] and pos is not None and pos.offset == 6
    live = t.live
    assert live is not None and len(live.buf) == 1000 and live.over == 4000  # memory stays at the bound
    with open(p, "ab") as f:
        f.write(b"B" * 3000 + b"\nsecond\nthird\n")
    got, pos = poll(t)
    assert got == [b"A" * 1000, b"second", b"third"]
    assert pos is not None and pos.offset == p.stat().st_size
    t.close()


def test_the_cut_line_is_a_chunk_of_its_own_with_true_offsets(tmp_path) -> None:
    """Callers count each line's offset from a chunk's start (log-line keys): the cut line comes
    alone, and the lines after it start where the file says they do."""
    p = tmp_path / "c.log"
    body = b"a\n" + b"L" * 3000 + b"\nb\nc\n"
    p.write_bytes(body)
    t = Tailer(str(p), None, max_bytes=256, max_line_bytes=700, newline_only=True)
    chunks = [(list(lines), pos.start, pos.offset) for lines, pos in t.poll()]
    t.close()
    cut = [c for c in chunks if c[0] and c[0][0].startswith(b"L")]
    assert len(cut) == 1 and cut[0][0] == [b"L" * 700] and cut[0][1] == 2 and cut[0][2] == 2 + 3001
    after = [c for c in chunks if c[1] >= 3003]
    for lines, start, end in after:
        assert body[start:end] == b"".join(x + b"\n" for x in lines)
    assert [x for c in after for x in c[0]] == [b"b", b"c"]


def test_a_restart_inside_a_long_line_skips_it_again(tmp_path) -> None:
    """The saved position never points into the long line, so its tail is never read as lines."""
    p = tmp_path / "audit.log"
    p.write_bytes(b"ok\n" + b'{"x": "' + b"Z" * 4000 + b'\n{"n": 1}')
    t = Tailer(str(p), None, max_bytes=300, max_line_bytes=1000)
    got, pos = poll(t)
    t.close()
    assert got[0] == b"ok" and pos is not None
    resumed = Tailer(str(p), pos, max_bytes=300, max_line_bytes=1000)
    with open(p, "ab") as f:
        f.write(b"\n")
    got2, _ = poll(resumed)
    resumed.close()
    # whether the first run saw the long line's newline or not, it comes out once, cut, then {"n": 1}
    assert (got + got2).count(b'{"n": 1}') == 1
    longs = [x for x in got + got2 if x.startswith(b'{"x"')]
    assert longs == [b'{"x": "' + b"Z" * 993]


def test_a_finished_file_ending_in_a_long_line_gives_its_head(tmp_path) -> None:
    p = tmp_path / "audit.log"
    p.write_bytes(b"x\n" + b"Q" * 2500)
    t = Tailer(str(p), None, max_bytes=400, max_line_bytes=600)
    poll(t)
    p.rename(tmp_path / "audit.log.1")  # rotated: the old file is drained to its end
    p.write_bytes(b"new\n")
    got, pos = poll(t)
    t.close()
    assert got == [b"Q" * 600, b"new"]
