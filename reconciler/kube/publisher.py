"""What the operator writes to Kubernetes, around each tick of the shared control loop.

Called by the controller (the ``Publisher`` hooks) in Kubernetes mode. Guarantees:

* status is written only through the ``status`` subresource, by server-side apply as the field
  manager ``slurm-reconciler`` (forced: the status is the operator's), so no read-modify-write
  and no conflict to retry; what the applied status leaves out is removed (a field the
  manager owned is dropped by the apply itself; one another writer owns, by a merge patch right
  after it); a status that did not change is not written at all; ``spec`` is never written;
* each SlurmCluster a tick looked at gets its status the same way (``Ready``, the version,
  MaxArraySize, the partitions, our jobs queued and running), written only when it changed; one
  that cannot be written is logged and written by the next tick;
* a finalizer is on every Workflow the operator runs, and leaves only once the workflow's Slurm
  jobs were cancelled (the loop prunes a Workflow being deleted);
* the local store is a cache: a run the store does not know is recreated from the object (its
  uid, its last status), so deleting the operator's state loses nothing;
* approvals come from the ``hpc.reconciler.dev/approve`` annotation (comma-separated tasks) as
  well as from ``approved:`` in the spec; a bare task in the annotation is rewritten
  ``task=FINGERPRINT``, pinning it to the inputs the status showed, so it survives a lost local
  state and does not count for other inputs; the ``hpc.reconciler.dev/approve-values``
  annotation (JSON: task -> values) gives those approvals their values, and
  ``hpc.reconciler.dev/reject`` (JSON: task -> reason) rejects a task at the inputs the status
  shows; values that do not fit the task's parameters approve nothing and are a Warning event;
* cancel and retry come from the ``hpc.reconciler.dev/cancel`` and ``hpc.reconciler.dev/retry``
  annotations (``TASK`` or ``TASK@N`` entries, ``*`` for every task they fit); each distinct entry
  is acted on once, so changing ``N`` asks again;
* finalizers and the approve annotation are changed with JSON patches that test the value read
  first, so a concurrent change makes the patch fail (and the next tick try again) instead of
  being overwritten;
* a status, event or finalizer that cannot be written affects only its workflow: ``publish``
  writes every other one and returns the statuses it could not write (each also posted as a
  ``StatusWriteFailed`` event), and the next tick writes them again;
* SSH private keys are read from the Secret a SlurmCluster names, kept in memory, never logged;
  a Secret that is missing or holds no key is a :class:`ClusterConnectionError` that says what
  to fix;
* the calls it makes are those :mod:`.permissions` lists: patch on workflows (finalizers,
  annotations), on workflows/status and slurmclusters/status, create on events, get on secrets.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from ..api import (
    API_VERSION,
    GROUP,
    VERSION,
    SlurmCluster,
    SlurmClusterSpec,
    SlurmClusterStatus,
    Task,
    WorkflowStatus,
)
from ..core.approvals import (
    REJECT_ANNOTATION,
    VALUES_ANNOTATION,
    AnnotationDecisions,
    ApprovalVia,
    annotation_decisions,
    annotation_text,
    parse_annotation,
    pin_entries,
)
from ..core.plan import Event
from ..core.requests import (
    cancellable_tasks,
    parse_entries,
    refusal_to_cancel,
    refusal_to_retry,
    retryable_tasks,
    tasks_named,
)
from ..engine.controller import ClusterConnectionError, ClusterReport, status_write_failed
from ..engine.metrics import Metrics
from ..sources.base import Snapshot
from ..store.database import Store, StoredWorkflow
from .informer import Informer, custom_object
from .source import PLURALS, KubernetesSource, deleting, origin

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/slurm-jobs"
APPROVE_ANNOTATION = f"{GROUP}/approve"
# Entries TASK or TASK@N, comma-separated; each distinct entry acts once ("*": every task it fits).
CANCEL_ANNOTATION = f"{GROUP}/cancel"
RETRY_ANNOTATION = f"{GROUP}/retry"
COMPONENT = "slurm-reconciler"
# The owner of .status in every object's managedFields.
FIELD_MANAGER = "slurm-reconciler"
APPLY_PATCH = "application/apply-patch+yaml"  # the client sends a dict body as JSON, which is YAML
MERGE_PATCH = "application/merge-patch+json"
# What a call to the API server can fail with: its answer, or no answer at all.
API_ERRORS = (ApiException, HTTPError, OSError)
# Secret keys: kubernetes.io/ssh-auth's own, then a plain name.
KEY_FIELDS = ("ssh-privatekey", "privateKey")
KNOWN_HOSTS_FIELD = "known_hosts"


def _status_document(status: WorkflowStatus | SlurmClusterStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_apply_body(kind: str, *, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """What a server-side apply of ``status`` sends: the object's identity and its status, no
    more, so the field manager owns ``.status`` and nothing else."""
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "status": status}


def leftover_fields(stored: Any, applied: Any) -> dict[str, Any] | None:
    """The merge patch that removes from ``stored`` every field ``applied`` does not have (None
    when there is none). An apply removes only the fields its manager owned; one another writer
    set (a status written before with an update, a hand edit) stays until it is removed this way.
    Lists are compared whole: the CRD's lists are atomic, an apply replaces them."""
    if not isinstance(stored, dict) or not isinstance(applied, dict):
        return None
    patch: dict[str, Any] = {}
    for key, value in stored.items():
        if key not in applied:
            patch[key] = None
        elif (inner := leftover_fields(value, applied[key])) is not None:
            patch[key] = inner
    return patch or None


def _api_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"the API server did not answer: {exc}"


class KubernetesPublisher:
    def __init__(self, *, custom: k8s.CustomObjectsApi, core: k8s.CoreV1Api, source: KubernetesSource,
                 state_dir: Path, metrics: Metrics) -> None:
        self.custom = custom
        self.core = core
        self.source = source
        self.state_dir = state_dir
        self.metrics = metrics
        # uid -> (the status document last written, the status the server stored for it): the
        # server may default or prune fields, so "unchanged" is judged against its own answer.
        self._written: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}

    # -- before the tick ---------------------------------------------------------------------

    def prepare(self, snapshot: Snapshot, store: Store, *, now: datetime) -> None:
        for obj in self.source.workflows.items():
            meta = obj["metadata"]
            namespace, name, uid = meta.get("namespace", "default"), meta["name"], meta["uid"]
            finalizers = list(meta.get("finalizers") or [])
            if deleting(obj):
                known = store.workflow_by_uid(uid)
                if FINALIZER in finalizers and known is not None and not known.active:
                    self._set_finalizers(obj, [f for f in finalizers if f != FINALIZER])  # pruned already
                    continue
                if FINALIZER not in finalizers:
                    continue  # not ours to hold up
            elif FINALIZER not in finalizers:
                self._set_finalizers(obj, [*finalizers, FINALIZER])
            stored = store.workflow(namespace, name)
            if stored is None or stored.uid != uid or not stored.active:
                self._adopt(obj, store, now=now)
            self._approve_by_annotation(obj, store, now=now)
            self._requests_by_annotation(obj, store, now=now)

    def _adopt(self, obj: dict[str, Any], store: Store, *, now: datetime) -> None:
        """A run the local store does not know yet (new, or a lost state): recorded under the
        object's uid with its last written status, so conditions and times carry on."""
        meta = obj["metadata"]
        resource = {key: value for key, value in obj.items() if key != "status"}
        stored = store.upsert_workflow(namespace=meta.get("namespace", "default"), name=meta["name"],
                                       resource=resource, revision=None, source_file=origin("Workflow", obj),
                                       now=now, uid=meta["uid"])
        if obj.get("status") and stored.status is None:
            try:
                store.save_status(stored.uid, WorkflowStatus.model_validate(obj["status"]))
            except ValidationError as exc:
                log.warning("%s: ignoring a status that does not parse: %s", origin("Workflow", obj), exc)

    def _approve_by_annotation(self, obj: dict[str, Any], store: Store, *, now: datetime) -> None:
        """Record the approve annotation's approvals. A bare ``TASK`` approves the fingerprint the
        status shows for the task now, and is rewritten ``TASK=FINGERPRINT`` (a metadata patch): the
        object keeps what was approved, so a lost local state gets the approval back and new inputs
        of the task do not inherit it."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        stored = store.workflow(namespace, name)
        if stored is None or stored.uid != meta["uid"] or not stored.active:
            return  # a Workflow being deleted: nothing left to approve
        annotations = meta.get("annotations") or {}
        written = annotations.get(APPROVE_ANNOTATION)
        entries = parse_annotation(written)
        shown = {task: found.fingerprint for task, found in (stored.status.tasks if stored.status else {}).items()
                 if found.fingerprint}
        pinned = pin_entries(entries, shown=shown)
        if pinned != entries and not self._pin_approvals(obj, written, annotation_text(pinned)):
            pinned = entries  # the bare entries are bound on a later tick, to what the status shows then
        decided = self._annotation_decisions(obj, store, stored.uid)
        for entry in pinned:
            # A rejection wins over an approval of the same task; values that did not fit approve nothing.
            if entry.fingerprint is not None and decided.approves(entry.task):
                store.approve(namespace, name, entry.task, fingerprint=entry.fingerprint, via=ApprovalVia.ANNOTATION,
                              by=entry.text, now=now, values=decided.values.get(entry.task) or None)
        for task, reason in decided.rejected.items():
            if task in shown:
                store.approve(namespace, name, task, fingerprint=shown[task], via=ApprovalVia.ANNOTATION,
                              by=f"{task} ({REJECT_ANNOTATION})", now=now, rejected=reason)

    def _annotation_decisions(self, obj: dict[str, Any], store: Store, uid: str) -> AnnotationDecisions:
        """The values and reject annotations, checked against the parameters the spec declares (a
        template instance's are checked by the loop); each refusal is a Warning event, once."""
        annotations = obj["metadata"].get("annotations") or {}
        tasks = (obj.get("spec") or {}).get("tasks")
        try:
            parameters = {t.name: t.parameters for t in map(Task.model_validate, tasks)} if tasks else None
        except ValidationError:
            parameters = None  # the loop reports the broken manifest itself
        decided = annotation_decisions(annotations.get(VALUES_ANNOTATION), annotations.get(REJECT_ANNOTATION),
                                       parameters=parameters)
        for problem in store.claim_entries(uid, VALUES_ANNOTATION, decided.problems):
            self._event(obj, Event("Warning", "ApprovalRefused", f"{problem} (nothing was approved)"))
        return decided

    def _requests_by_annotation(self, obj: dict[str, Any], store: Store, *, now: datetime) -> None:
        """The cancel and retry annotations, recorded as ``reconciler cancel`` and ``retry`` record
        them. Each entry acts once (``claim_entries``); one that asks what makes no sense for its
        task now (cancel a finished task, retry a running one) is a Warning event instead."""
        meta = obj["metadata"]
        stored = store.workflow(meta.get("namespace", "default"), meta["name"])
        if stored is None or stored.uid != meta["uid"] or not stored.active:
            return
        annotations = meta.get("annotations") or {}
        for annotation, applicable, refusal in ((CANCEL_ANNOTATION, cancellable_tasks, refusal_to_cancel),
                                                (RETRY_ANNOTATION, retryable_tasks, refusal_to_retry)):
            entries = parse_entries(annotations.get(annotation))
            fresh = set(store.claim_entries(stored.uid, annotation, [entry for entry, _ in entries]))
            named = tasks_named([e for e in entries if e[0] in fresh], known=applicable(stored.status))
            for entry, tasks in named.items():
                for task in tasks:
                    why = refusal(stored.status, task)
                    if why is not None:
                        self._event(obj, Event("Warning", "RequestRefused", f"{annotation}: {entry}: {why}"))
                    elif annotation == CANCEL_ANNOTATION:
                        store.request_cancel(stored.uid, {task: cancellable_tasks(stored.status)[task]},
                                             by=f"annotation {annotation}={entry}", now=now)
                    else:
                        store.request_retry(stored.uid, task, by=f"annotation {annotation}={entry}", now=now)

    def _pin_approvals(self, obj: dict[str, Any], written: str | None, value: str) -> bool:
        """Rewrite the approve annotation as ``value``, unless it changed meanwhile."""
        meta = obj["metadata"]
        path = "/metadata/annotations/" + APPROVE_ANNOTATION.replace("~", "~0").replace("/", "~1")
        patch: list[dict[str, Any]] = [{"op": "test", "path": path, "value": written},
                                       {"op": "replace", "path": path, "value": value}]
        try:
            updated = custom_object(self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta.get("namespace", "default"), "workflows", meta["name"], patch,
                _content_type="application/json-patch+json"))
        except API_ERRORS as exc:
            log.info("%s: approve annotation not pinned (%s); next tick", origin("Workflow", obj), _api_error(exc))
            return False
        self.source.workflows.remember(updated)
        return True

    def _set_finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        meta = obj["metadata"]
        # A JSON patch that tests the list first: a concurrent change makes it fail (422/409)
        # instead of being overwritten; the next tick sees the new object and tries again.
        patch: list[dict[str, Any]] = (
            [{"op": "test", "path": "/metadata/finalizers", "value": meta["finalizers"]},
             {"op": "replace", "path": "/metadata/finalizers", "value": finalizers}]
            if meta.get("finalizers") is not None
            else [{"op": "add", "path": "/metadata/finalizers", "value": finalizers}]
        )
        try:
            updated = custom_object(self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta.get("namespace", "default"), "workflows", meta["name"], patch,
                _content_type="application/json-patch+json"))
            self.source.workflows.remember(updated)
        except API_ERRORS as exc:
            if isinstance(exc, ApiException) and exc.status in (404, 409, 422):
                log.info("%s: finalizers changed meanwhile (%s); next tick", origin("Workflow", obj), exc.status)
            else:
                # Only this workflow waits: the next tick, which sees it again, tries again.
                log.warning("%s: finalizers not updated (%s); next tick tries again", origin("Workflow", obj),
                            _api_error(exc))

    # -- after the tick ----------------------------------------------------------------------

    def publish(self, *, statuses: Mapping[str, WorkflowStatus], events: Mapping[str, Sequence[Event]],
                pruned: Sequence[StoredWorkflow], store: Store,
                clusters: Sequence[ClusterReport] = ()) -> dict[str, str]:
        failed: dict[str, str] = {}
        for uid, status in statuses.items():
            stored = store.workflow_by_uid(uid)
            if stored is not None and (reason := self._write_status(stored, _status_document(status))):
                failed[uid] = reason
        posted = {uid: list(items) for uid, items in events.items()}
        for uid, reason in failed.items():
            posted.setdefault(uid, []).append(status_write_failed(reason))
        for uid, items in posted.items():
            stored = store.workflow_by_uid(uid)
            obj = self.source.workflows.get(stored.namespace, stored.name) if stored else None
            if obj is not None and obj["metadata"]["uid"] == uid:
                for event in items:
                    self._event(obj, event)
        for stored in pruned:
            obj = self.source.workflows.get(stored.namespace, stored.name)
            if obj is not None and obj["metadata"]["uid"] == stored.uid and FINALIZER in (
                    obj["metadata"].get("finalizers") or []):
                self._set_finalizers(obj, [f for f in obj["metadata"]["finalizers"] if f != FINALIZER])
        for report in clusters:
            self._write_cluster_status(report)
        # The controller counts the tick's events; these are the ones added here.
        self.metrics.count_events({uid: [status_write_failed(reason)] for uid, reason in failed.items()})
        return failed

    def _write_status(self, stored: StoredWorkflow, document: dict[str, Any]) -> str | None:
        """Write one workflow's status; why it could not be written, or None."""
        try:
            self._apply_status(self.source.workflows, "Workflow", namespace=stored.namespace, name=stored.name,
                               uid=stored.uid, document=document)
            return None
        except API_ERRORS as exc:
            return _api_error(exc)
        except Exception as exc:  # one workflow's status must not keep the others from being written
            log.exception("workflow %s/%s: writing its status failed", stored.namespace, stored.name)
            return f"unexpected {type(exc).__name__}: {exc}"

    def _write_cluster_status(self, report: ClusterReport) -> None:
        meta = report.cluster.metadata
        if meta.uid is None:
            return  # not read from the API server: there is no object to write to
        try:
            self._apply_status(self.source.informers["SlurmCluster"], "SlurmCluster", namespace=meta.namespace,
                               name=meta.name, uid=meta.uid, document=_status_document(report.status))
        except API_ERRORS as exc:
            log.warning("slurmcluster %s/%s: status not written (%s); the next tick writes it again", meta.namespace,
                        meta.name, _api_error(exc))
        except Exception:  # a cluster's status must not keep the tick's other writes from happening
            log.exception("slurmcluster %s/%s: writing its status failed", meta.namespace, meta.name)

    def _apply_status(self, informer: Informer, kind: str, *, namespace: str, name: str, uid: str,
                      document: dict[str, Any]) -> None:
        """Server-side apply ``document`` as the status of the object ``uid``, unless the object
        is gone or already shows it."""
        obj = informer.get(namespace, name)
        if obj is None or obj["metadata"]["uid"] != uid:
            return  # the object is gone (or is another one of that name): nothing to write to
        if obj.get("status") == document or self._written.get(uid) == (document, obj.get("status")):
            return
        plural = PLURALS[kind]
        try:
            updated = custom_object(self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name,
                status_apply_body(kind, namespace=namespace, name=name, status=document),
                field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH))
            leftover = leftover_fields(updated.get("status"), document)
            if leftover is not None:
                log.info("%s: removing status fields the operator no longer sets: %s", origin(kind, obj),
                         ", ".join(sorted(leftover)))
                updated = custom_object(self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, {"status": leftover}, field_manager=FIELD_MANAGER,
                    _content_type=MERGE_PATCH))
        except ApiException as exc:
            if exc.status == 404:
                return  # deleted since the cache saw it
            raise
        informer.remember(updated)
        # The server may prune or default fields: "unchanged" is judged against its own answer.
        self._written[uid] = (document, updated.get("status"))

    def _event(self, obj: dict[str, Any], event: Event) -> None:
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace", "default")},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "Workflow", "name": meta["name"],
                               "namespace": meta.get("namespace", "default"), "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": event.reason, "message": event.message[:1024], "type": event.type,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            # The client serializes a dict body as it is; only its type hints ask for a CoreV1Event.
            self.core.create_namespaced_event(meta.get("namespace", "default"), cast(k8s.CoreV1Event, body))
        except API_ERRORS as exc:
            # Events are for people; losing one must not stop the loop.
            log.warning("could not record event %s on %s: %s", event.reason, origin("Workflow", obj), _api_error(exc))

    # -- credentials -------------------------------------------------------------------------

    def connection(self, cluster: SlurmCluster) -> tuple[SlurmClusterSpec, str | None]:
        spec = cluster.spec
        if spec.ssh is None or spec.ssh.key_secret_ref is None:
            return spec, None
        namespace = cluster.metadata.namespace
        data = self._secret_data(namespace, spec.ssh.key_secret_ref)
        where = f"Secret {namespace}/{spec.ssh.key_secret_ref}"
        field = next((f for f in KEY_FIELDS if f in data), None)
        if field is None:
            raise ClusterConnectionError(f"{where} has no {' or '.join(KEY_FIELDS)} key: put the SSH private key "
                                         "under one of them")
        try:
            key = _decoded(data[field], what=f"{where}, key {field}").decode()
        except UnicodeDecodeError:
            raise ClusterConnectionError(f"{where}, key {field} does not hold a private key in text (OpenSSH or "
                                         "PEM) form") from None
        if KNOWN_HOSTS_FIELD in data:
            # The transport checks host keys against a file; the pod's one writable place holds it.
            path = self.state_dir / "known_hosts" / f"{namespace}.{cluster.metadata.name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_decoded(data[KNOWN_HOSTS_FIELD], what=f"{where}, key {KNOWN_HOSTS_FIELD}"))
            spec = spec.model_copy(update={"ssh": spec.ssh.model_copy(update={"known_hosts_file": str(path)})})
        return spec, key

    def _secret_data(self, namespace: str, name: str) -> dict[str, bytes | str]:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except API_ERRORS as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                raise ClusterConnectionError(f"Secret {namespace}/{name} not found: create it or fix "
                                             "spec.ssh.keySecretRef") from exc
            if isinstance(exc, ApiException) and exc.status == 403:
                raise ClusterConnectionError(f"Secret {namespace}/{name} cannot be read (403 Forbidden): the "
                                             "operator reads only the Secrets its RBAC names; with the chart, "
                                             f"add {{name: {name}, namespace: {namespace}}} to secretAccess"
                                             ) from exc
            raise ClusterConnectionError(f"Secret {namespace}/{name} cannot be read: {_api_error(exc)}") from exc
        return dict(secret.data or {})


def _decoded(value: bytes | str, *, what: str) -> bytes:
    try:
        return base64.b64decode(value)
    except binascii.Error:
        raise ClusterConnectionError(f"{what} is not valid base64") from None

