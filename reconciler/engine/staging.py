"""Task inputs: found in the source at the edge, staged on the cluster before submission.

Called by the controller once per workflow and tick (:func:`find_inputs`, whose digests the pure
core folds into the tasks' fingerprints) and by the executor before each submission of a task
that has inputs (:func:`stage`). What it guarantees:

* A file is read from the snapshot the tick planned with: for a Git source the blob of the commit
  read, never the working copy; for a folder the file on disk; in Kubernetes mode the ConfigMap.
  An input that names nothing (a missing file, a glob matching nothing, a missing ConfigMap or
  key) is reported as missing, by task, with the manifest that names it; the task is then not
  submitted, and the others go on.
* Staging is content-addressed and idempotent: each file goes once to
  ``<cluster workdir>/.reconciler/blobs/<sha256>`` (written to a temporary name and renamed, so a
  crash never leaves half a blob; a blob already there is not sent again), then is copied into
  the task's run directory under its relative path, again through a temporary name and a rename.
  Doing it again changes nothing, so it runs before the intent is recorded and is simply done
  again on the next tick when it failed.
* Outputs of an earlier task are not staged here: the job copies them itself when it starts
  (see ``slurm.script``), since a task submitted ahead with ``afterok`` goes out before its
  prerequisite has run.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..api import Task, TaskInput
from ..core.inputs import TaskInputs, combined_digest, expand, fixed_prefix, is_pattern, missing_message, source_path
from ..manifests.resolve import ResolvedWorkflow
from ..slurm.client import SlurmError, SlurmUnavailable
from ..slurm.transport import Transport, TransportError
from ..sources.base import ConfigMaps, SourceError, SourceFiles

log = logging.getLogger(__name__)

# Inputs are scripts, parameters and small reference files; bulk data belongs on the cluster's
# file system, and every tick reads and hashes each input.
MAX_INPUT_BYTES = 64 * 1024 * 1024
# Paths per staging command, far below ARG_MAX whatever a glob matches.
_PATHS_PER_COMMAND = 200
_STAGE_TIMEOUT = 120.0
# Prints those of its arguments that are regular files.
_PRESENT = 'for f; do [ -f "$f" ] && printf "%s\\n" "$f"; done; exit 0'
# Copies each (blob, target, mode) triple into place through a temporary name and a rename.
_PLACE = ('set -e; while [ "$#" -ge 3 ]; do tmp="$2.staging.$$"; mkdir -p -- "$(dirname -- "$2")"; '
          'cp -- "$1" "$tmp"; chmod "$3" "$tmp"; mv -f -- "$tmp" "$2"; shift 3; done')


@dataclass(frozen=True)
class InputFile:
    """One file a task finds in its run directory."""

    target: str  # relative to the run directory
    digest: str  # sha256 of the content: the blob's name
    executable: bool
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class FoundInputs:
    """One task's inputs as found this tick: the files to stage, and the core's view of them."""

    files: tuple[InputFile, ...]
    state: TaskInputs


def find_inputs(resolved: ResolvedWorkflow, *, content: SourceFiles | None,
                config_maps: ConfigMaps | None) -> dict[str, FoundInputs]:
    """The inputs of every task of ``resolved`` that stages any (upstream outputs are the
    upstream's fingerprint already, and the job copies them itself)."""
    manifest = resolved.location.file if resolved.location else None
    namespace = resolved.workflow.metadata.namespace
    found: dict[str, FoundInputs] = {}
    for name, task in resolved.tasks.items():
        staged = [item for item in task.inputs if item.task is None]
        if staged:
            found[name] = _task_inputs(task, staged, manifest=manifest, namespace=namespace, content=content,
                                       config_maps=config_maps)
    return found


def _task_inputs(task: Task, items: Sequence[TaskInput], *, manifest: str | None, namespace: str,
                 content: SourceFiles | None, config_maps: ConfigMaps | None) -> FoundInputs:
    files: dict[str, InputFile] = {}
    missing: list[str] = []
    for item in items:
        try:
            if item.config_map is not None:
                found = _from_config_map(item, namespace=namespace, config_maps=config_maps)
            else:
                found = _from_source(item, manifest=manifest, content=content)
        except SourceError as exc:
            missing.append(f"{missing_message(item.described, manifest=manifest, task=task.name)}: cannot be read "
                           f"now ({exc}); read again next tick")
            continue
        if isinstance(found, str):
            missing.append(f"{missing_message(item.described, manifest=manifest, task=task.name)}: {found}")
            continue
        files.update((file.target, file) for file in found)
    digest = combined_digest((f"{file.target}{':x' if file.executable else ''}", file.digest)
                             for file in files.values())
    return FoundInputs(files=tuple(files[target] for target in sorted(files)),
                       state=TaskInputs(digest=digest, missing=tuple(missing)))


def _from_source(item: TaskInput, *, manifest: str | None, content: SourceFiles | None) -> list[InputFile] | str:
    """The files a path input names, or why there are none."""
    assert item.path is not None
    if content is None:
        return "this source holds no files (in Kubernetes mode, inputs come from a configMap or an earlier task)"
    full = source_path(manifest, item.path)
    folder = posixpath.dirname(source_path(manifest, "x"))
    names = expand(full, content.listing(fixed_prefix(full))) if is_pattern(full) else [full]
    files = []
    for name in names:
        read = content.read(name)
        if read is None:
            return "no such file in the source"
        if len(read.data) > MAX_INPUT_BYTES:
            return f"{name} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; keep bulk data on the cluster"
        files.append(_file(posixpath.relpath(name, folder) if folder else name, read.data, read.executable))
    return files or "the pattern matches no file in the source"


def _from_config_map(item: TaskInput, *, namespace: str, config_maps: ConfigMaps | None) -> list[InputFile] | str:
    assert item.config_map is not None
    if config_maps is None:
        return "ConfigMaps are read in Kubernetes mode only"
    data = config_maps.get(namespace, item.config_map)
    if data is None:
        return f"no ConfigMap {item.config_map} in namespace {namespace}"
    if item.key is not None:
        if item.key not in data:
            return f"ConfigMap {item.config_map} has no key {item.key}"
        data = {item.key: data[item.key]}
    return [_file(key, value, False) for key, value in sorted(data.items())] or f"ConfigMap {item.config_map} is empty"


def _file(target: str, data: bytes, executable: bool) -> InputFile:
    return InputFile(target=target, digest=hashlib.sha256(data).hexdigest(), executable=executable, data=data)


@dataclass(frozen=True)
class StageReport:
    uploaded: tuple[str, ...]  # digests of the blobs sent this time
    placed: int  # files copied into the run directory


def blob_dir(cluster_workdir: str) -> str:
    return posixpath.join(cluster_workdir, ".reconciler", "blobs")


def stage(transport: Transport, *, cluster_workdir: str, run_dir: str, files: Sequence[InputFile]) -> StageReport:
    """Put ``files`` into ``run_dir`` on the cluster. Raises :class:`SlurmUnavailable` when the
    cluster could not be reached (retry next tick) and :class:`SlurmError` when it refused."""
    blobs = blob_dir(cluster_workdir)
    unique = {file.digest: file for file in files}
    try:
        present = _present(transport, [posixpath.join(blobs, digest) for digest in unique])
        uploaded = []
        for digest, file in unique.items():
            path = posixpath.join(blobs, digest)
            if path in present:
                continue
            transport.write_file(path, file.data, mode=0o444)
            uploaded.append(digest)
            log.info("uploaded input blob %s (%d bytes) to %s", digest[:12], len(file.data), transport.description)
        triples = [(posixpath.join(blobs, file.digest), posixpath.join(run_dir, file.target),
                    "755" if file.executable else "644") for file in files]
        for start in range(0, len(triples), _PATHS_PER_COMMAND):
            _checked(transport, ["sh", "-c", _PLACE, "sh",
                                 *(word for triple in triples[start:start + _PATHS_PER_COMMAND] for word in triple)],
                     what=f"placing inputs in {run_dir}")
    except TransportError as exc:
        raise SlurmUnavailable(f"staging inputs into {run_dir} on {transport.description}: {exc}") from exc
    return StageReport(uploaded=tuple(uploaded), placed=len(files))


def _present(transport: Transport, paths: Sequence[str]) -> set[str]:
    present: set[str] = set()
    for start in range(0, len(paths), _PATHS_PER_COMMAND):
        output = _checked(transport, ["sh", "-c", _PRESENT, "sh", *paths[start:start + _PATHS_PER_COMMAND]],
                          what="looking for input blobs")
        present.update(line for line in output.splitlines() if line)
    return present


def _checked(transport: Transport, argv: Sequence[str], *, what: str) -> str:
    result = transport.run(argv, timeout=_STAGE_TIMEOUT)
    if result.exit_code != 0:
        raise SlurmError(f"{what} on {transport.description} failed ({result.exit_code}): "
                         f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def input_states(found: Mapping[str, FoundInputs]) -> dict[str, TaskInputs]:
    return {name: inputs.state for name, inputs in found.items()}


def staged_files(found: Mapping[str, FoundInputs] | None, task: str) -> Iterable[InputFile]:
    inputs = found.get(task) if found else None
    return inputs.files if inputs is not None else ()
