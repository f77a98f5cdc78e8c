"""Fixtures for tests that talk to the test Kubernetes API server: a fresh server per test, its
kubeconfig, the pinned kubectl, and a python ``kubernetes`` client bound to it (never the global
default configuration, so tests cannot leak into each other)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from .apiserver import ApiServer
from .tools import kubectl_binary

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer(bookmark_interval=0.5).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path) -> Path:
    return apiserver.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture(scope="session")
def kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubectl(kubeconfig: Path, kubectl_cache: Path, tmp_path: Path) -> Kubectl:
    """Run the pinned kubectl against the server: ``kubectl("get", "workflows")``; ``check=False``
    to inspect a failure, ``input=`` for ``-f -``."""
    binary = kubectl_binary()

    def run(
        *args: str, check: bool = True, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubectl_cache), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


@pytest.fixture
def kube_api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def crds(kube_api: client.ApiClient) -> None:
    """The project's CRDs, posted as kubectl apply would post them."""
    ext = client.ApiextensionsV1Api(kube_api)
    for path in sorted(CRDS.glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
