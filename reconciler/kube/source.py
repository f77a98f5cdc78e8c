"""Desired state from the Kubernetes API: Workflows, WorkflowTemplates and SlurmClusters, as a
:class:`reconciler.sources.base.Snapshot` the same control loop as Git mode reads.

Called by the operator. ``read()`` never talks to the API server: it copies the informers'
caches, so a tick costs no API call for desired state. Objects that fail the models' validation
come back as broken documents named ``workflow NAMESPACE/NAME`` (no file, no line); Workflows
being deleted are left out of the desired state, so the loop prunes them (cancels their jobs)
before their finalizer is released.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client as k8s

from ..manifests.loader import LoadedResource, LoadResult, load_object
from ..sources.base import Snapshot
from .informer import Informer

PLURALS = {"Workflow": "workflows", "WorkflowTemplate": "workflowtemplates", "SlurmCluster": "slurmclusters"}


def origin(kind: str, obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{kind.lower()} {meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def deleting(obj: dict[str, Any]) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


class KubernetesSource:
    def __init__(self, api: k8s.CustomObjectsApi, *, namespace: str | None) -> None:
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
        return Snapshot(load=load, revision=None, files=())

    def wait(self, timeout: float) -> bool:
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        for informer in self.informers.values():
            informer.stop()
