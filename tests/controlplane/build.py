"""Builds the test control plane (kube-apiserver and etcd) from the Go module beside this file.

Called by the control-plane fixture before it starts the servers. The module's ``go.mod`` pins
``k8s.io/kubernetes`` (its staging modules replaced by the matching ``k8s.io/*`` releases, as
the Kubernetes repository's own ``go.mod`` does with local paths) and ``go.etcd.io/etcd/server/v3``;
``go.sum`` fixes every module's hash, so the build reads exactly those sources from the Go module
proxy. Guarantees: the binaries land in a cache directory outside the repository keyed by the
hash of the module's files and of the version stamp linked in (``ldflags``: the server reports
the pinned release, as kubectl and helm expect), so a changed pin builds afresh and an unchanged
one is reused at once; Go's own module and build caches make a rebuild after a pin change
cheap; two processes asking at once build once (a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE = Path(__file__).resolve().parent
COMMANDS = ("kube-apiserver", "etcd")
# The first build on a fresh 2-core machine downloads ~400 modules and compiles kube-apiserver.
BUILD_TIMEOUT = 3600.0


class BuildFailed(RuntimeError):
    """The Go toolchain is missing or the build failed; the message holds go's output."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path


def cache_root() -> Path:
    override = os.environ.get("RECONCILER_CONTROLPLANE_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slurm-reconciler" / "controlplane"


def source_hash() -> str:
    digest = hashlib.sha256(ldflags().encode() + b"\0")
    files = [MODULE / "go.mod", MODULE / "go.sum", *sorted((MODULE / "cmd").rglob("*.go"))]
    for path in files:
        digest.update(path.relative_to(MODULE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ldflags() -> str:
    """The version stamp a Kubernetes release build links in (k8s.io/component-base/version):
    without it the server reports v0.0.0-master, which clients checking the server's version
    refuse (helm, for a chart's kubeVersion)."""
    found = re.search(r"^\s*k8s\.io/kubernetes (v(\d+)\.(\d+)\.\d+)\s*$", (MODULE / "go.mod").read_text(), re.MULTILINE)
    if found is None:
        raise BuildFailed("tests/controlplane/go.mod requires no k8s.io/kubernetes version")
    version, major, minor = found.groups()
    package = "k8s.io/component-base/version"
    return (f"-X {package}.gitVersion={version} -X {package}.gitMajor={major} -X {package}.gitMinor={minor}"
            f" -X {package}.gitTreeState=clean")


def go_binary() -> str:
    found = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
                                        if os.access(p, os.X_OK)), None)
    if found is None:
        raise BuildFailed("the Go toolchain (go) is not on PATH nor in /usr/local/go/bin: install Go >= 1.24")
    return found


def binaries() -> Binaries:
    """The paths of the built binaries, building them first when this version is not cached."""
    target = cache_root() / source_hash()
    wanted = Binaries(kube_apiserver=target / "kube-apiserver", etcd=target / "etcd")
    if all(path.is_file() for path in (wanted.kube_apiserver, wanted.etcd)):
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(path.is_file() for path in (wanted.kube_apiserver, wanted.etcd)):
            _build(target)
    return wanted


def _build(target: Path) -> None:
    staging = target / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    # -mod=readonly: go.sum is the contract; a module whose hash differs fails instead of being
    # written into the repository. -trimpath keeps build paths out of the binaries.
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
    argv = [go_binary(), "build", "-trimpath", "-ldflags", ldflags(), "-o", str(staging) + "/",
            *(f"./cmd/{c}" for c in COMMANDS)]
    done = subprocess.run(argv, cwd=MODULE, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if done.returncode != 0:
        raise BuildFailed(f"go build of the test control plane failed ({done.returncode}):\n{done.stderr[-4000:]}")
    for command in COMMANDS:
        os.replace(staging / command, target / command)
    staging.rmdir()


if __name__ == "__main__":
    built = binaries()
    print(built.kube_apiserver)
    print(built.etcd)
