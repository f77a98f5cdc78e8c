# syntax=docker/dockerfile:1
#
# The operator image: `reconciler operator`, the Kubernetes mode of slurm-reconciler.
# Build from the repository root:
#
#   docker build -t slurm-reconciler:0.1.0 .
#
# and deploy it with the Helm chart in charts/slurm-reconciler.

# --- build: install the package and its dependencies into a virtualenv -----------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/slurm-reconciler

WORKDIR /src
# Only what building the package needs; .dockerignore keeps everything else out of the context.
# README.md is the package's long description (pyproject.toml's readme), so the build needs it.
COPY pyproject.toml README.md ./
COPY reconciler/ reconciler/
RUN /opt/slurm-reconciler/bin/pip install .

# --- runtime: the virtualenv on a clean base, without the source tree or pip's build leftovers --
FROM python:3.11-slim

# No openssh-client: the SSH transport is paramiko, in the virtualenv.
ENV PATH=/opt/slurm-reconciler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RECONCILER_STATE_DIR=/var/lib/slurm-reconciler

# A fixed numeric uid: Kubernetes can verify runAsNonRoot only against a number, and the chart's
# podSecurityContext uses the same one. The state directory is the user's own so the image
# also works without a volume; the chart mounts an emptyDir there, and one on /tmp, because it
# runs the container with a read-only root filesystem.
RUN groupadd --system --gid 10001 reconciler \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin reconciler \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/slurm-reconciler

COPY --from=build /opt/slurm-reconciler /opt/slurm-reconciler

USER 10001:10001
# Prometheus metrics (/metrics) and health (/healthz).
EXPOSE 8080
ENTRYPOINT ["reconciler", "operator"]
