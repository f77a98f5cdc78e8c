"""Workflow objects and a typed Workflow client for the tests of the test API server."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .conftest import REPO

GROUP, VERSION, PLURAL = "hpc.reconciler.dev", "v1alpha1", "workflows"


def plan_manifest() -> str:
    """examples/ultrasound-plan.yaml, with any bare ``on:`` key quoted: YAML 1.1 (kubectl's parser)
    reads it as ``true`` (see test_unquoted_on_key_is_an_unknown_field)."""
    text = (REPO / "examples" / "ultrasound-plan.yaml").read_text()
    return re.sub(r"^(\s*)on:", r'\1"on":', text, flags=re.M)


def workflow(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"tasks": [{"name": "only", "command": ["true"]}], **spec},
    }


class Workflows:
    """CustomObjectsApi for Workflows in one namespace, with typed results."""

    def __init__(self, api_client: client.ApiClient, namespace: str = "default") -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def _args(self) -> tuple[str, str, str, str]:
        return GROUP, VERSION, self.namespace, PLURAL

    def create(self, body: dict[str, Any], **options: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.create_namespaced_custom_object(*self._args(), body, **options))

    def get(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.get_namespaced_custom_object(*self._args(), name))

    def list(self, **options: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.list_namespaced_custom_object(*self._args(), **options))

    def list_all(self, **options: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **options))

    def patch(self, name: str, body: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.patch_namespaced_custom_object(*self._args(), name, body))

    def patch_status(self, name: str, body: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.patch_namespaced_custom_object_status(*self._args(), name, body))

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.replace_namespaced_custom_object(*self._args(), name, body))

    def delete(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.delete_namespaced_custom_object(*self._args(), name))


def columns(table_output: str) -> list[list[str]]:
    return [line.split() for line in table_output.strip().splitlines()]


def status(err: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.body or "{}")
    return body
