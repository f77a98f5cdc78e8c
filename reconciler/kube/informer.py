"""A local cache of one kind of Kubernetes object, kept current by list and watch.

Used by the operator's source, one informer per kind. Guarantees, as client-go's reflector
does: a watch resumes from the last resourceVersion it saw (bookmarks included), an expired
version (410 Gone) triggers a full relist, any other failure is retried with jittered backoff,
and every change to the cache calls ``on_change`` (which wakes the control loop). Readers get a
consistent copy of the cache.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from ..api import GROUP, VERSION
from ..backoff import backoff_delay

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300
# List/watch retries: 1 s after the first failure, doubling up to 30 s, spread by +-20%.
BACKOFF_BASE_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0

Key = tuple[str, str]  # (namespace, name)


def custom_object(result: object) -> dict[str, Any]:
    """A custom-object call's result as the JSON object it is.

    The generated client declares these methods as returning ``object``: a custom resource has
    no model class, so the response is deserialized to plain JSON, which for every call made
    here (get, list, patch, replace) is a mapping.
    """
    return cast(dict[str, Any], result)


class Informer:
    def __init__(self, api: k8s.CustomObjectsApi, *, plural: str, namespace: str | None,
                 on_change: Callable[[], None]) -> None:
        self.api = api
        self.plural = plural
        self.namespace = namespace  # None: every namespace
        self.on_change = on_change
        self._objects: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._resource_version: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{plural}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(obj) for obj in self._objects.values()]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._objects.get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def remember(self, obj: dict[str, Any]) -> None:
        """Take an object this process just wrote (its newer resourceVersion), ahead of the watch."""
        key = _key(obj)
        with self._lock:
            current = self._objects.get(key)
            if current is None or _newer(obj, current):
                self._objects[key] = obj

    # -- list and watch ----------------------------------------------------------------------

    def _list(self) -> dict[str, Any]:
        if self.namespace is None:
            return custom_object(self.api.list_cluster_custom_object(GROUP, VERSION, self.plural))
        return custom_object(self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural))

    def _stream(self, resource_version: str) -> Iterator[dict[str, Any]]:
        self._watch = watch.Watch()
        arguments: dict[str, Any] = {"resource_version": resource_version, "allow_watch_bookmarks": True,
                                     "timeout_seconds": WATCH_TIMEOUT_SECONDS}
        if self.namespace is None:
            return self._watch.stream(self.api.list_cluster_custom_object, GROUP, VERSION, self.plural, **arguments)
        return self._watch.stream(self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                  self.plural, **arguments)

    def _relist(self) -> str:
        """Replace the cache with a fresh list; the list's resourceVersion, to watch from."""
        listed = self._list()
        objects = {_key(obj): obj for obj in listed.get("items", [])}
        with self._lock:
            self._objects = objects
        resource_version: str = listed["metadata"]["resourceVersion"]
        self._resource_version = resource_version
        self._synced.set()
        self.on_change()
        return resource_version

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                resource_version = self._resource_version
                if resource_version is None:
                    resource_version = self._relist()
                for event in self._stream(resource_version):
                    if self._stop.is_set():
                        return
                    self._apply(event)
                failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s: watch expired (410 Gone); listing again", self.plural)
                    self._resource_version = None
                    continue
                failures += 1
                self._pause(failures, f"{exc.status} {exc.reason}")
            except Exception as exc:  # a dropped connection, a bad chunk: the watch starts over
                if self._stop.is_set():
                    return
                failures += 1
                self._pause(failures, repr(exc))

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        obj = event["raw_object"] if "raw_object" in event else event["object"]
        if kind == "ERROR":
            status = obj if isinstance(obj, dict) else {}
            if status.get("code") == 410:
                raise ApiException(status=410, reason="Expired")
            raise ApiException(status=status.get("code", 500), reason=status.get("message", "watch error"))
        self._resource_version = obj.get("metadata", {}).get("resourceVersion", self._resource_version)
        if kind == "BOOKMARK":
            return
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_key(obj), None)
            else:
                current = self._objects.get(_key(obj))
                if current is None or not _newer(current, obj):
                    self._objects[_key(obj)] = obj
        self.on_change()

    def _pause(self, failures: int, why: str) -> None:
        delay = backoff_delay(failures, base=BACKOFF_BASE_SECONDS, cap=MAX_BACKOFF_SECONDS, jitter=(0.8, 1.2))
        log.warning("%s: list/watch failed (%s); retrying in %.1fs", self.plural, why, delay)
        self._stop.wait(delay)


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta.get("name", ""))


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether ``a`` is a later version than ``b`` of the same object. resourceVersions are
    opaque in general; every API server in use compares them as integers (etcd revisions)."""
    try:
        return int(a["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return False
