"""The image's install, without a container engine: deploy/image/build-venv.sh (the very script the
Dockerfile's build stage runs) builds a fresh venv from requirements.lock with --require-hashes, and
the result runs `kubetrail --version` and the demo. A dependency missing from the lock fails here
(`pip check`, then the demo), not on a user's cluster.

Needs PyPI (or the configured index) to download the locked wheels.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.slow
@pytest.mark.integration
def test_locked_install_runs_version_and_demo(tmp_path: Path) -> None:
    prefix = tmp_path / "opt-kubetrail"
    had_build_dir = (ROOT / "build").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    build = subprocess.run(["sh", str(ROOT / "deploy/image/build-venv.sh"), str(prefix), str(ROOT)],
                           capture_output=True, text=True, env=env, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    assert f"kubetrail, version {VERSION}" in build.stdout
    assert not (prefix / "bin" / "pip").exists(), "pip is removed from the runtime venv"
    assert (ROOT / "build").exists() == had_build_dir, "the wheel is built from a copy of the source tree"

    kt = str(prefix / "bin" / "kubetrail")
    # as in the image: the working directory and the source tree are not on the path
    version = subprocess.run([kt, "--version"], capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert version.returncode == 0 and version.stdout.strip() == f"kubetrail, version {VERSION}"
    where = subprocess.run([str(prefix / "bin" / "python"), "-c", "import kubetrail; print(kubetrail.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert where.stdout.startswith(str(prefix)), "kubetrail is imported from the venv, not from the checkout"
    demo = subprocess.run([kt, "demo", "--events", "300", "--data", str(tmp_path / "data")], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "kubetrail verify" in demo.stdout
    verify = subprocess.run([kt, "verify", "--data", str(tmp_path / "data")], capture_output=True, text=True,
                            env=env, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
