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
    lines = {m[1]: m[0] for m in re.finditer(r"^  (ingest[^\n]*?|parse only[^\n]*?)\s{2,}min.*$", proc.stdout, re.M)}
    assert set(lines) == {"parse only (orjson)", "ingest, single process", "ingest --workers 2"}, proc.stdout
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
