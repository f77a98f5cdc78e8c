"""In-memory stand-ins for the edges of the control loop, for fast tests of a whole tick: a
source of manifests, a Slurm login node, a publisher, and the two Kubernetes API objects the
publisher calls. Each implements the protocol the package defines for that edge and nothing
more; each can be told to fail, the way the real thing fails, for one cluster, one command or
one workflow.

Real Slurm, sshd and an API server are exercised by tests/integration; these fakes answer in
the formats captured from Slurm 22.05 (tests/unit/data/slurm-22.05) and from the Kubernetes
client, so what they feed the code goes through the real parsers.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from reconciler.api import SlurmCluster, SlurmClusterSpec, WorkflowStatus
from reconciler.core.plan import Event
from reconciler.engine.controller import ClusterConnectionError, ClusterReport
from reconciler.manifests.loader import load_text
from reconciler.slurm.commands import command_name
from reconciler.slurm.transport import CommandResult
from reconciler.sources.base import Snapshot
from reconciler.store.database import Store, StoredWorkflow

CAPTURED = Path(__file__).parent / "unit" / "data" / "slurm-22.05"


class MemorySource:
    """Manifests held as one YAML text (``text`` may be replaced between ticks)."""

    description = "manifests in memory"

    def __init__(self, text: str) -> None:
        self.text = text
        self._changed = threading.Event()

    def read(self) -> Snapshot:
        return Snapshot(load=load_text(self.text, filename="plans.yaml"), revision=None, files=("plans.yaml",))

    def wait(self, timeout: float) -> bool:
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        pass


@dataclass
class QueuedJob:
    job_id: str
    name: str
    comment: str
    state: str = "PENDING"
    reason: str = "None"


class FakeSlurm:
    """A login node whose Slurm keeps its queue in memory.

    ``sbatch`` queues the script it is given as a pending job (named and tagged by the script's
    own ``#SBATCH`` lines), ``squeue`` lists the queue, ``sacct`` knows no finished job yet,
    ``scontrol hold|release`` and ``scancel`` act on the queue, and ``scontrol show`` and
    ``sacctmgr`` answer with the captured output of the dev cluster. ``fail`` plants a fault.
    """

    def __init__(self, description: str = "fake login node", *, first_job_id: int = 100) -> None:
        self.description = description
        self.files: dict[str, bytes] = {}
        self.queue: dict[str, QueuedJob] = {}
        self.calls: list[tuple[str, ...]] = []  # every command run, and ("write_file", path)
        self._faults: list[tuple[str, str, BaseException]] = []
        self._next_id = first_job_id

    def fail(self, what: str, error: BaseException, *, containing: str = "") -> None:
        """From now on, ``what`` (a command such as "squeue" or "sbatch", or "write_file") raises
        ``error`` whenever one of its words contains ``containing``."""
        self._faults.append((what, containing, error))

    def submitted(self) -> list[QueuedJob]:
        return list(self.queue.values())

    # -- the Transport protocol ------------------------------------------------------------

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60.0) -> CommandResult:
        words = tuple(argv)
        self.calls.append(words)
        name = command_name(words)
        self._raise_planted(name, words)
        rest = words[words.index(name) + 1:]
        if name == "squeue":
            return _ok(words, "".join(f"{j.job_id}|{j.job_id}|N/A|{j.state}|{j.reason}|1||N/A|0:00|{j.name}|"
                                      f"{j.comment}\n" for j in self.queue.values()))
        if name == "sacct":
            return _ok(words, "")
        if name == "sbatch":
            return self._sbatch(words, rest[-1])
        if name == "scancel":
            for job_id in rest:
                self.queue.pop(job_id, None)
            return _ok(words, "")
        if name == "scontrol":
            return self._scontrol(words, rest)
        if name == "sacctmgr":
            captured = "sacctmgr-show-association.txt" if "association" in rest else "sacctmgr-show-qos.txt"
            return _ok(words, (CAPTURED / captured).read_text())
        return CommandResult(words, 127, "", f"{name}: command not found")

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.calls.append(("write_file", path))
        self._raise_planted("write_file", (path,))
        self.files[path] = data

    def make_dirs(self, *paths: str) -> None:
        self.calls.append(("make_dirs", *paths))

    def fetch(self, directory: str, patterns: Sequence[str], destination: Path) -> list[Path]:
        return []

    def watch_names(self, directory: str, found: Callable[[list[str]], None], stop: threading.Event) -> None:
        stop.wait()  # the fake runs no script, so no job ever writes an end record

    def close(self) -> None:
        pass

    # -- commands --------------------------------------------------------------------------

    def _raise_planted(self, what: str, words: tuple[str, ...]) -> None:
        for command, containing, error in self._faults:
            if command == what and any(containing in word for word in words):
                raise error

    def _sbatch(self, words: tuple[str, ...], script_path: str) -> CommandResult:
        script = self.files.get(script_path)
        if script is None:
            return CommandResult(words, 1, "", f"sbatch: error: Unable to open file {script_path}")
        directives = dict(line.removeprefix("#SBATCH --").partition("=")[::2]
                          for line in script.decode().splitlines() if line.startswith("#SBATCH --"))
        job_id = str(self._next_id)
        self._next_id += 1
        self.queue[job_id] = QueuedJob(job_id, directives["job-name"], directives["comment"])
        return _ok(words, f"{job_id}\n")

    def _scontrol(self, words: tuple[str, ...], rest: tuple[str, ...]) -> CommandResult:
        if rest[:2] == ("show", "config"):
            return _ok(words, (CAPTURED / "scontrol-show-config.txt").read_text())
        if rest[:2] == ("show", "partition"):
            return _ok(words, (CAPTURED / "scontrol-show-partition.txt").read_text())
        if rest[0] in ("hold", "release"):
            for job_id in rest[1].split(","):
                self.queue[job_id].reason = "JobHeldUser" if rest[0] == "hold" else "None"
            return _ok(words, "")
        return CommandResult(words, 1, "", f"scontrol: error: invalid keyword: {rest[0]}")


def _ok(argv: tuple[str, ...], stdout: str) -> CommandResult:
    return CommandResult(argv, 0, stdout, "")


class LoginNodes(dict[str, FakeSlurm]):
    """The controller's ``connect``: the FakeSlurm of each cluster, told apart by workdir."""

    def __init__(self, nodes: Mapping[str, FakeSlurm]) -> None:
        super().__init__(nodes)
        self.opened: list[str] = []  # workdirs, one per connection opened

    def __call__(self, spec: SlurmClusterSpec, *, private_key: str | None) -> FakeSlurm:
        self.opened.append(spec.workdir)
        return self[spec.workdir]


class MemoryPublisher:
    """A publisher that keeps what it is given: the last status written for each workflow
    uid, the events, the pruned workflows, the cluster reports. ``break_cluster`` makes a cluster's connection fail,
    ``refuse_write`` makes the next status write of a workflow fail."""

    def __init__(self) -> None:
        self.written: dict[str, WorkflowStatus] = {}
        self.events: dict[str, list[Event]] = {}
        self.pruned: list[StoredWorkflow] = []
        self.clusters: list[ClusterReport] = []
        self.connections: list[str] = []  # cluster names, one per connection asked for
        self._broken: dict[str, str] = {}
        self._refused: dict[str, str] = {}

    def break_cluster(self, name: str, why: str) -> None:
        self._broken[name] = why

    def mend_cluster(self, name: str) -> None:
        self._broken.pop(name, None)

    def refuse_write(self, workflow: str, why: str) -> None:
        self._refused[workflow] = why

    def prepare(self, snapshot: Snapshot, store: Store, *, now: Any) -> None:
        pass

    def publish(self, *, statuses: Mapping[str, WorkflowStatus], events: Mapping[str, Sequence[Event]],
                pruned: Sequence[StoredWorkflow], store: Store,
                clusters: Sequence[ClusterReport] = ()) -> dict[str, str]:
        self.clusters.extend(clusters)
        failed = {}
        for uid, status in statuses.items():
            stored = store.workflow_by_uid(uid)
            why = self._refused.pop(stored.name, None) if stored is not None else None
            if why is not None:
                failed[uid] = why
            else:
                self.written[uid] = status
        for uid, items in events.items():
            self.events.setdefault(uid, []).extend(items)
        self.pruned.extend(pruned)
        return failed

    def connection(self, cluster: SlurmCluster) -> tuple[SlurmClusterSpec, str | None]:
        name = cluster.metadata.name
        self.connections.append(name)
        if name in self._broken:
            raise ClusterConnectionError(self._broken[name])
        return cluster.spec, None


# -- the Kubernetes API, as far as the publisher calls it -----------------------------------------


class FakeCustomObjects:
    """Custom objects by (namespace, name), written the way the API server does: a status
    server-side apply removes what the same manager applied before and left out now, and leaves
    the fields it never applied (another writer's) alone; a merge patch removes the fields set to
    null. Every write bumps the resourceVersion. ``refuse`` makes every call of one kind on one
    object fail with the given HTTP status."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status_writes: list[str] = []  # names, one per accepted status write
        self.status_calls: list[dict[str, Any]] = []  # each status write, as it was asked for
        self._applied: dict[tuple[str, str], dict[str, Any]] = {}  # the last status applied to each object
        self._refused: dict[tuple[str, str], tuple[int, str]] = {}
        self._version = 1

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_version()
        self.objects[(meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def refuse(self, name: str, *, call: str, status: int, reason: str) -> None:
        self._refused[(call, name)] = (status, reason)

    def mend(self, name: str, *, call: str) -> None:
        self._refused.pop((call, name), None)

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str, plural: str,
                                              name: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
        self._check("status", name)
        self.status_calls.append({"plural": plural, "name": name, "body": copy.deepcopy(body), **options})
        current = self._get(namespace, name)
        if options.get("_content_type") == "application/apply-patch+yaml":
            status = _without(current.get("status") or {}, self._applied.get((namespace, name), {}), body["status"])
            current["status"] = _merged(status, body["status"])
            self._applied[(namespace, name)] = copy.deepcopy(body["status"])
        elif options.get("_content_type") == "application/merge-patch+json":
            current["status"] = _merged(current.get("status") or {}, body["status"])
        else:
            raise ApiException(status=415, reason="Unsupported Media Type")
        current["metadata"]["resourceVersion"] = self._next_version()
        self.status_writes.append(name)
        return copy.deepcopy(current)

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                       body: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        self._check("patch", name)
        current = self._get(namespace, name)
        for operation in body:
            if operation["op"] in ("add", "replace") and operation["path"] == "/metadata/finalizers":
                current["metadata"]["finalizers"] = list(operation["value"])
        current["metadata"]["resourceVersion"] = self._next_version()
        return copy.deepcopy(current)

    def _check(self, call: str, name: str) -> None:
        refused = self._refused.get((call, name))
        if refused is not None:
            raise ApiException(status=refused[0], reason=refused[1])

    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get((namespace, name))
        if found is None:
            raise ApiException(status=404, reason="Not Found")
        return found

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)


def _without(stored: dict[str, Any], applied_before: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """``stored`` less the fields applied before and not applied now (maps field by field)."""
    kept = copy.deepcopy(stored)
    for key, value in applied_before.items():
        if key not in applied:
            kept.pop(key, None)
        elif isinstance(value, dict) and isinstance(applied[key], dict) and isinstance(kept.get(key), dict):
            kept[key] = _without(kept[key], value, applied[key])
    return kept


def _merged(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) of ``stored``: maps merged, null removes, the rest replaced."""
    out = copy.deepcopy(stored)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeCoreV1:
    """Secrets to read and the Events created."""

    def __init__(self, secrets: Mapping[tuple[str, str], dict[str, str]] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.forbidden: set[tuple[str, str]] = set()  # Secrets the RBAC does not name
        self.events: list[dict[str, Any]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> k8s.V1Secret:
        if (namespace, name) in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")
        data = self.secrets.get((namespace, name))
        if data is None:
            raise ApiException(status=404, reason="Not Found")
        return k8s.V1Secret(data=data)

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body
