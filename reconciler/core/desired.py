"""What the source declares this tick, sorted into what the loop does with each workflow.

Pure: called once per tick by the controller with the source's snapshot and the names of the
workflows the store holds as active. Guarantees, so bad input loses nothing:

* a workflow whose own document is broken, or that cannot be resolved (unknown template or
  cluster, a cycle), is **invalid**: it gets the Invalid phase with every error's file and line,
  keeps its last good spec in the store, and its jobs are left alone;
* a manifest file that cannot be parsed at all hides which workflows it held: every active
  workflow last read from that file is invalid with the file's errors, never pruned;
* only a workflow that is gone from a source that was read cleanly is **pruned**.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api import SlurmCluster
from ..manifests.loader import LoadResult, ManifestError
from ..manifests.resolve import InvalidWorkflow, ResolvedWorkflow, resolve

Identity = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Invalid:
    namespace: str
    name: str
    errors: tuple[ManifestError, ...]
    resource: dict | None = None  # the parsed resource, when the document itself was readable

    @property
    def messages(self) -> list[str]:
        return [str(error) for error in self.errors]


@dataclass
class DesiredState:
    valid: list[ResolvedWorkflow] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)
    prune: list[Identity] = field(default_factory=list)
    clusters: dict[str, SlurmCluster] = field(default_factory=dict)
    errors: list[ManifestError] = field(default_factory=list)  # tied to no workflow (clusters, templates)


def classify_desired(load: LoadResult, *, active: Mapping[Identity, str | None]) -> DesiredState:
    """``active`` maps each active stored workflow to the file it was last read from."""
    state = DesiredState()
    resolution = resolve(load.resources)
    state.valid = list(resolution.workflows)
    state.clusters = dict(resolution.clusters)
    state.errors = list(resolution.errors)
    invalid: dict[Identity, Invalid] = {}
    for item in resolution.invalid:
        invalid[_identity(item)] = Invalid(item.workflow.metadata.namespace, item.workflow.metadata.name,
                                           item.errors, item.workflow.to_wire())
    unreadable_files: dict[str, list[ManifestError]] = {}
    for broken in load.broken:
        if broken.kind == "Workflow" and broken.name:
            key = (broken.namespace or "default", broken.name)
            previous = invalid.get(key)
            errors = (previous.errors if previous else ()) + broken.errors
            invalid[key] = Invalid(key[0], key[1], errors, previous.resource if previous else None)
        elif broken.kind is None or broken.name is None:
            for error in broken.errors:
                unreadable_files.setdefault(error.file, []).append(error)
        else:
            state.errors.extend(broken.errors)
    for identity, source_file in active.items():
        if identity not in invalid and source_file in unreadable_files:
            invalid[identity] = Invalid(identity[0], identity[1], tuple(unreadable_files[source_file]))
    state.errors.extend(e for errors in unreadable_files.values() for e in errors)
    state.invalid = sorted(invalid.values(), key=lambda i: (i.namespace, i.name))
    declared = {(w.workflow.metadata.namespace, w.workflow.metadata.name) for w in state.valid} | set(invalid)
    state.prune = sorted(identity for identity in active if identity not in declared)
    return state


def _identity(item: InvalidWorkflow) -> Identity:
    return (item.workflow.metadata.namespace, item.workflow.metadata.name)
