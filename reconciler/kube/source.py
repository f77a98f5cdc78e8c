"""Desired state from the Kubernetes API: Workflows, WorkflowTemplates and SlurmClusters, as a
:class:`reconciler.sources.base.Snapshot` the same control loop as Git mode reads.

Called by the operator. ``read()`` never talks to the API server: it copies the informers'
caches, so a tick costs no API call for desired state. Objects that fail the models' validation
come back as broken documents named ``workflow NAMESPACE/NAME`` (no file, no line); Workflows
being deleted are left out of the desired state, so the loop prunes them (cancels their jobs)
before their finalizer is released.

The ConfigMaps that task inputs name are the one exception: each snapshot reads each ConfigMap
it is asked for once from the API server (a tick asks for each at most once, however many tasks
name it); a missing one is ``None`` (the task waits with ``InputMissing``), any other failure a
``SourceError`` for that tick.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ..manifests.loader import LoadedResource, LoadResult, load_object
from ..sources.base import Snapshot, SourceError
from .informer import Informer

PLURALS = {"Workflow": "workflows", "WorkflowTemplate": "workflowtemplates", "SlurmCluster": "slurmclusters"}


def origin(kind: str, obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{kind.lower()} {meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def deleting(obj: dict[str, Any]) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


class KubernetesSource:
    def __init__(self, api: k8s.CustomObjectsApi, *, namespace: str | None,
                 core: k8s.CoreV1Api | None = None) -> None:
        self._core = core
        self.description = f"kubernetes ({'namespace ' + namespace if namespace else 'all namespaces'})"
        self._changed = threading.Event()
        self.informers = {kind: Informer(api, plural=plural, namespace=namespace, on_change=self.wake)
                          for kind, plural in PLURALS.items()}

    def start(self, *, timeout: float = 60.0) -> bool:
        for informer in self.informers.values():
            informer.start()
        return all(informer.wait_synced(timeout) for informer in self.informers.values())

    @property
    def workflows(self) -> Informer:
        return self.informers["Workflow"]

    def read(self) -> Snapshot:
        load = LoadResult()
        for kind, informer in self.informers.items():
            for obj in informer.items():
                if kind == "Workflow" and deleting(obj):
                    continue
                loaded = load_object(obj, origin=origin(kind, obj))
                if isinstance(loaded, LoadedResource):
                    load.resources.append(loaded)
                else:
                    load.broken.append(loaded)
        return Snapshot(load=load, revision=None, files=(),
                        config_maps=ConfigMapReader(self._core) if self._core is not None else None)

    def wait(self, timeout: float) -> bool:
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        for informer in self.informers.values():
            informer.stop()


# A ConfigMap read must not hold the tick up for long; the next tick reads it again.
_READ_TIMEOUT = 10.0


class ConfigMapReader:
    """The ConfigMaps of one snapshot, each read once, as file contents by key."""

    def __init__(self, core: k8s.CoreV1Api) -> None:
        self._core = core
        self._read: dict[tuple[str, str], dict[str, bytes] | None] = {}

    def get(self, namespace: str, name: str) -> dict[str, bytes] | None:
        key = (namespace, name)
        if key not in self._read:
            self._read[key] = self._fetch(namespace, name)
        return self._read[key]

    def _fetch(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            found = self._core.read_namespaced_config_map(name, namespace, _request_timeout=_READ_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            hint = ": the operator's Role must grant get on configmaps" if exc.status == 403 else ""
            raise SourceError(f"ConfigMap {namespace}/{name}: {exc.status} {exc.reason}{hint}") from exc
        except (HTTPError, OSError) as exc:
            raise SourceError(f"ConfigMap {namespace}/{name} cannot be read: {exc}") from exc
        data = {key: value.encode() for key, value in (found.data or {}).items()}
        try:
            data.update({key: base64.b64decode(value) for key, value in (found.binary_data or {}).items()})
        except binascii.Error as exc:
            raise SourceError(f"ConfigMap {namespace}/{name}: binaryData is not base64") from exc
        return data
