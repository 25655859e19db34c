"""bench/ingest.py, issue 18's yardstick: it runs against the code it measures, and what it reports of
the processes it did not start itself holds — the sampler finds a grandchild (the preparation workers
are the ingest process's children) and reads each process's own peak RSS, not the high-water mark a
``vfork``ed child inherits from the script across ``exec``."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_sampler_finds_a_grandchild_and_its_cpu() -> None:
    bench = _bench()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(0.3)"
    parent = ("import subprocess, sys\n"
              f"subprocess.run([sys.executable, '-c', {busy!r}])")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    sampler = bench.Descendants(proc.pid)
    sampler.start()
    proc.wait()
    time.sleep(0.06)
    sampler.done.set()
    sampler.join()
    assert proc.pid in sampler.cpu and len(sampler.cpu) == 2, sampler.cpu  # the child and its child
    child = next(pid for pid in sampler.cpu if pid != proc.pid)
    assert sampler.cpu[child] >= 0.3 and sampler.rss[child] > 1


@pytest.mark.slow
def test_the_bench_runs_both_arrangements(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--events", "400", "--runs", "1",
                           "--levels", "Metadata", "--workers", "0,2", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {m[1]: m[0] for m in re.finditer(r"^  (ingest[^\n]*?|parse only[^\n]*?|python walk[^\n]*?)\s{2,}min.*$",
                                               proc.stdout, re.M)}
    assert set(lines) == {"parse only (orjson)", "python walk (yardstick)", "ingest, single process",
                          "ingest --workers 2"}, proc.stdout
    workers = lines["ingest --workers 2"]
    main, every = (int(x) for x in re.search(r"main\s+(\d+) all\s+(\d+)", workers).groups())  # type: ignore[union-attr]
    assert every > main  # the workers' CPU, found by the sampler, is in "all"
    rss = int(re.search(r"RSS MiB main\s+(\d+)", workers)[1])  # type: ignore[index]
    assert 20 < rss < 300


def test_the_ingest_process_s_own_peak_rss_not_the_script_s(tmp_path: Path) -> None:
    """Measured from a process holding 400 MiB (as the script does after generating a log in memory):
    the ingest process's figure is its own."""
    import orjson

    from kubetrail.testing import make_event

    bench = _bench()
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}")) + b"\n" for i in range(50)))
    held = bytearray(400 << 20)
    held[::4096] = b"x" * len(held[::4096])  # resident, not only reserved
    _, _, _, main_rss, _ = bench.ingest_once(str(log), 0, True, str(tmp_path))
    del held
    assert 20 < main_rss < 300, main_rss


def test_a_log_at_a_busy_apiserver_s_rate_keeps_everything_but_the_times(tmp_path: Path) -> None:
    """``--rate``: the same events in the same order, their two timestamps squeezed into events/rate seconds."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import audit_events
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from kubetrail.timefmt import parse_rfc3339_ns

    plain, fast = tmp_path / "plain.log", tmp_path / "fast.log"
    n, _ = audit_events.write(str(plain), "Metadata", 400)
    assert audit_events.write(str(fast), "Metadata", 400, rate=100)[0] == n
    import orjson

    a = [orjson.loads(x) for x in plain.read_bytes().splitlines()]
    b = [orjson.loads(x) for x in fast.read_bytes().splitlines()]
    times = audit_events.TIMES
    assert [{k: v for k, v in e.items() if k not in times} for e in a] == \
        [{k: v for k, v in e.items() if k not in times} for e in b]

    def span(evs: list[dict[str, object]]) -> float:
        ns = [parse_rfc3339_ns(e[f]) for e in evs for f in times]
        return (max(ns) - min(ns)) / 1e9  # type: ignore[type-var, operator]

    assert span(a) > 3600 and abs(span(b) - n / 100) < 0.01 * n / 100
    for f in b:  # received before its stage (times are never moved apart), as the apiserver writes them
        assert parse_rfc3339_ns(f[times[0]]) <= parse_rfc3339_ns(f[times[1]])  # type: ignore[operator]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", f[times[1]])
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--events", "300", "--runs", "1",
                           "--levels", "Metadata", "--workers", "0", "--dir", str(tmp_path), "--rate", "1000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1000 events/s of event time" in proc.stdout and (tmp_path / "audit-Metadata-300-1000ps.log").exists()
