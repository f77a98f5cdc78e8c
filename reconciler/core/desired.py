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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..api import SlurmCluster
from ..manifests.loader import BrokenDocument, LoadResult, ManifestError
from ..manifests.resolve import InvalidWorkflow, ResolvedWorkflow, resolve

Identity = tuple[str, str]  # (namespace, name)
Errors = tuple[ManifestError, ...]


@dataclass(frozen=True)
class Invalid:
    namespace: str
    name: str
    errors: Errors
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
    resolution = resolve(load.resources)
    broken = _BrokenDocuments.sort(load.broken)
    invalid = _with_broken_workflows(
        {_identity(item): Invalid(item.workflow.metadata.namespace, item.workflow.metadata.name, item.errors,
                                  item.workflow.to_wire()) for item in resolution.invalid},
        broken.workflows,
    )
    invalid.update(_hidden_by_unreadable_files(active, known=invalid, unreadable=broken.unreadable))
    declared = {(w.workflow.metadata.namespace, w.workflow.metadata.name) for w in resolution.workflows} | set(invalid)
    return DesiredState(
        valid=list(resolution.workflows),
        invalid=sorted(invalid.values(), key=lambda i: (i.namespace, i.name)),
        prune=sorted(identity for identity in active if identity not in declared),
        clusters=dict(resolution.clusters),
        errors=[*resolution.errors, *broken.other,
                *(error for errors in broken.unreadable.values() for error in errors)],
    )


@dataclass(frozen=True)
class _BrokenDocuments:
    """The documents that failed to load, sorted by what they stand for."""

    workflows: tuple[tuple[Identity, Errors], ...]  # workflows whose identity could be read
    unreadable: Mapping[str, Errors]  # by file: documents of no readable kind or name
    other: Errors  # documents of another kind (clusters, templates)

    @classmethod
    def sort(cls, documents: Iterable[BrokenDocument]) -> _BrokenDocuments:
        workflows: list[tuple[Identity, Errors]] = []
        unreadable: dict[str, Errors] = {}
        other: list[ManifestError] = []
        for document in documents:
            if document.kind == "Workflow" and document.name:
                workflows.append(((document.namespace or "default", document.name), document.errors))
            elif document.kind is None or document.name is None:
                for error in document.errors:
                    unreadable[error.file] = (*unreadable.get(error.file, ()), error)
            else:
                other.extend(document.errors)
        return cls(workflows=tuple(workflows), unreadable=unreadable, other=tuple(other))


def _with_broken_workflows(
    invalid: Mapping[Identity, Invalid], broken: Iterable[tuple[Identity, Errors]]
) -> dict[Identity, Invalid]:
    """Each broken workflow document makes its workflow invalid, adding to the errors it has."""
    result = dict(invalid)
    for key, document_errors in broken:
        previous = result.get(key)
        errors = (previous.errors if previous else ()) + document_errors
        result[key] = Invalid(key[0], key[1], errors, previous.resource if previous else None)
    return result


def _hidden_by_unreadable_files(
    active: Mapping[Identity, str | None], *, known: Mapping[Identity, Invalid],
    unreadable: Mapping[str, Errors],
) -> dict[Identity, Invalid]:
    """An active workflow last read from a file that cannot be parsed may still be declared
    there: it is invalid with the file's errors, never pruned."""
    return {
        identity: Invalid(identity[0], identity[1], unreadable[source_file])
        for identity, source_file in active.items()
        if identity not in known and source_file is not None and source_file in unreadable
    }


def _identity(item: InvalidWorkflow) -> Identity:
    return (item.workflow.metadata.namespace, item.workflow.metadata.name)
