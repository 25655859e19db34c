#!/bin/sh
# Build kubetrail's virtualenv from the hash locks, exactly as the image's build stage does:
#   build-venv.sh PREFIX [SOURCE_DIR]
# The Dockerfile runs this script and tests/integration/test_image_install.py runs the same script in
# a fresh temporary directory, so what the test proves is what the image contains.
# Only wheels whose SHA-256 is in a lock are installed (--require-hashes, no source builds); the
# kubetrail wheel itself is built from SOURCE_DIR with a hash-locked setuptools, without network.
set -eu
PREFIX=$1
SRC=${2:-.}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PIP="--no-cache-dir --disable-pip-version-check --quiet"

"$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/pip" install $PIP --require-hashes --only-binary=:all: --no-deps -r "$SRC/requirements.lock"

# the wheel is built from a copy, so the source tree stays clean (no build/ or egg-info)
mkdir "$WORK/src"
cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/src" "$WORK/src/"
"$PYTHON" -m venv "$WORK/build"
"$WORK/build/bin/pip" install $PIP --require-hashes --only-binary=:all: --no-deps -r "$SRC/requirements-build.lock"
"$WORK/build/bin/pip" wheel $PIP --no-deps --no-build-isolation --no-index -w "$WORK/wheel" "$WORK/src"

"$PREFIX/bin/pip" install $PIP --no-deps --no-index "$WORK"/wheel/kubetrail-*.whl
"$PREFIX/bin/pip" check                       # every dependency of every package is in the lock
"$PREFIX/bin/python" -m pip uninstall $PIP -y pip   # the runtime image installs nothing at run time
"$PREFIX/bin/kubetrail" --version
