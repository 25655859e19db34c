"""Lets the trail tests import the RFC transcription that sits next to them; ``trail`` is a writable
copy of the golden trail (scripts/make_golden_trail.py) for the tamper tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

GOLDEN = Path(__file__).parents[2] / "data" / "trail"


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    shutil.copytree(GOLDEN, tmp_path / "t")
    for p in (tmp_path / "t").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return tmp_path / "t"
