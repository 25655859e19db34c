# kubetrail container image (docs/deploy.md "Build the image").
#   docker build -t kubetrail:0.1.0 .          # the tag is the version in pyproject.toml
# One image runs every component: `kubetrail agent`, `collector`, `serve`, `webhook serve`,
# `check apiserver`. It runs as a non-root user with a read-only root filesystem; the only
# writable paths are the volumes the manifests mount (data, WAL, /tmp).
# The dependency install is deploy/image/build-venv.sh, which tests/integration/test_image_install.py
# runs from the same hash locks on every CI run.

FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM base AS build
WORKDIR /src
COPY requirements.lock requirements-build.lock pyproject.toml README.md ./
COPY src ./src
COPY deploy/image/build-venv.sh /usr/local/bin/build-venv
RUN sh /usr/local/bin/build-venv /opt/kubetrail /src

FROM base AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubetrail" \
      org.opencontainers.image.description="Tamper-evident audit trail, log agent, credential inventory and detections for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"
# journalctl for the agent's journald source (reads a node's journal mounted into the pod);
# the Debian package version is pinned (bump with the base image: apt-cache policy systemd)
ARG SYSTEMD_VERSION=252.39-1~deb12u2
RUN apt-get update \
    && apt-get install -y --no-install-recommends "systemd=${SYSTEMD_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
# uid/gid 65532 ("nonroot" in distroless images); the manifests set the same ids
RUN groupadd --system --gid 65532 kubetrail \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kubetrail
COPY --from=build /opt/kubetrail /opt/kubetrail
ENV PATH=/opt/kubetrail/bin:$PATH \
    KUBETRAIL_DATA=/var/lib/kubetrail
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["kubetrail"]
CMD ["--help"]
