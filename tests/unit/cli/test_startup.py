"""Fast start (issue 16): `kubetrail --help` and `query --count` import only what they use.

Two checks per command: which modules load (``python -X importtime``; exact, so a new eager
import of the pipeline, rich or a command module fails here whatever the machine's load), and
the CPU time of the whole process against the 150 ms aim (best of three runs; CPU time rather
than wall-clock time, because the helpers share two cores and a loaded machine stretches wall
time, not the work done). `bench/cli_startup.py` prints the wall-clock figures.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[2] / "data" / "trail" / "data"
BUDGET_US = 150_000  # the aim, for `--help`
# `query --count` opens the store, and the store's package loads the trail's protocols (and with
# them most of trail/): ~125 ms of CPU on the 2-core dev machine, too close to the aim for a guard
# that must not flake under load. The module check below is the strict guard; this one catches
# regressions, against the same machine: at most QUERY_GUARD_RATIO x the CPU of a process importing
# the libraries the command cannot do without (``FLOOR``; 1.4-1.5x measured). An absolute 200 ms
# failed on a VM that ran everything 1.7x slower (161-212 ms; its floor 112-125 ms).
# bench/cli_startup.py prints the figures (bench/RESULTS.md).
QUERY_GUARD_RATIO = 2.0
FLOOR = "import click, msgspec, orjson, zstandard, sqlite3, hashlib, json"
# Modules a quick command must never load: the wiring, the engines, the table and YAML libraries.
HEAVY = ("kubetrail.pipeline", "kubetrail.detect", "kubetrail.credentials", "kubetrail.alerts",
         "kubetrail.sources", "kubetrail.posture", "kubetrail.demo", "rich", "yaml", "cryptography")


def importtime(*args: str) -> tuple[set[str], int]:
    """(modules imported, summed cumulative µs of the top-level imports) for `kubetrail ARGS`."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "kubetrail", *args], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    modules, total = set(), 0
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|")
        modules.add(name.strip())
        if not name.startswith("  "):  # a top-level import: its cumulative time covers its children
            total += int(cumulative)
    return modules, total


def cpu_us(*args: str) -> int:
    """User + system CPU time of one ``python ARGS`` process, in µs, with its bytecode cached as an
    installed package has it: a shell with PYTHONDONTWRITEBYTECODE set (CI's may) would otherwise
    compile every module of the checkout from source in each run (~300 ms instead of ~190 on a slow VM)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], capture_output=True, check=True, timeout=60, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int(((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e6)


def best_cpu_us(*args: str) -> int:
    """The best CPU µs of three runs, after one that writes the bytecode the others read."""
    cpu_us(*args)
    return min(cpu_us(*args) for _ in range(3))


def best_of_three(*args: str) -> tuple[set[str], int]:
    """(modules imported, best CPU µs of three runs of `kubetrail ARGS`)."""
    return importtime(*args)[0], best_cpu_us("-m", "kubetrail", *args)


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_no_command_module() -> None:
    modules, total = best_of_three("--help")
    commands = sorted(m for m in modules if m.startswith("kubetrail.cli.") and m != "kubetrail.cli.exitcodes")
    assert commands == [], f"`kubetrail --help` imported command modules: {commands}"
    assert heavy(modules) == []
    assert total < BUDGET_US, f"`kubetrail --help` took {total / 1000:.0f} ms of CPU (aim < 150 ms)"


def test_query_count_loads_only_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(GOLDEN, data)
    modules, total = best_of_three("query", "--count", "--data", str(data))
    assert "kubetrail.cli.query" in modules and "kubetrail.cli.ingest" not in modules
    assert heavy(modules) == [], f"`query --count` imported {heavy(modules)}"
    # pairs run back to back see the same phase of a noisy VM (a best of three each apart: 1.4x to 2.3x)
    pairs = [(cpu_us("-m", "kubetrail", "query", "--count", "--data", str(data)), cpu_us("-c", FLOOR))
             for _ in range(5)]
    ratio = statistics.median(q / f for q, f in pairs)
    assert ratio < QUERY_GUARD_RATIO, (
        f"`kubetrail query --count` took {ratio:.2f}x the CPU of importing its libraries alone (guard "
        f"{QUERY_GUARD_RATIO}x; best {total / 1000:.0f} ms; aim < 150 ms on the dev machine): {pairs}")


@pytest.mark.parametrize("args", [["query", "--help"], ["alerts", "--help"], ["creds", "list", "--help"]])
def test_a_commands_help_loads_its_module_not_the_engines(args: list[str]) -> None:
    modules, _ = importtime(*args)
    assert "kubetrail.pipeline" not in modules
