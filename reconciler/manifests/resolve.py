"""Turning loaded resources into runnable workflows: template instantiation, cluster choice,
defaults and the DAG check, with every problem attributed to the workflow's manifest.

Pure: called by ``reconciler validate``, ``reconciler render`` and each tick of the control loop.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ..api import SlurmCluster, Task, TaskType, Workflow, WorkflowSpec, WorkflowTemplate
from ..api.orchestration import AUTO
from .dag import DagError, TaskGraph, build_graph
from .loader import LoadedResource, ManifestError, SourceLocation
from .templates import TemplateError, instantiate


@dataclass(frozen=True)
class ResolvedWorkflow:
    """A runnable workflow. Its graph is never changed once resolved, so what is derived from
    the graph alone (the order, each task's prerequisites) is worked out once per object rather
    than on every tick that plans it."""

    workflow: Workflow
    spec: WorkflowSpec  # with template tasks substituted
    tasks: dict[str, Task]  # effective tasks (defaults merged), by name
    graph: TaskGraph
    # Where it runs: None when resolved without any cluster declared, or while the spec names
    # several candidates and the reconciler has not chosen among them yet.
    cluster: SlurmCluster | None
    location: SourceLocation | None
    candidates: tuple[SlurmCluster, ...] = ()  # the clusters spec.cluster allows

    @cached_property
    def order(self) -> tuple[str, ...]:
        return self.graph.topological_order()

    @cached_property
    def content(self) -> str:
        """Everything planning reads of the workflow, as one text: two resolved workflows with
        the same content are planned alike (the graph follows from the spec)."""
        parts = [self.workflow.model_dump_json(), self.spec.model_dump_json(),
                 self.cluster.model_dump_json() if self.cluster is not None else "",
                 *(candidate.metadata.name for candidate in self.candidates)]
        return "\n".join(parts)

    @cached_property
    def prerequisites(self) -> dict[str, tuple[str, ...]]:
        """Each task's direct prerequisites, sorted by name."""
        return {name: tuple(sorted(self.graph.predecessors(name))) for name in self.graph.nodes}

    @cached_property
    def approvals_before(self) -> dict[str, tuple[str, ...]]:
        """Each task's approval tasks with parameters before it (directly or not), sorted by name;
        only tasks that have any are listed."""
        found: dict[str, set[str]] = {}
        for name, task in self.tasks.items():
            if task.type is TaskType.APPROVAL and task.parameters:
                for after in self.graph.descendants(name):
                    found.setdefault(after, set()).add(name)
        return {name: tuple(sorted(before)) for name, before in found.items()}


# Resolved workflows by what they were resolved from, most recently used last: the loop resolves
# every declared workflow each tick, mostly from unchanged manifests, and handing back the same
# object keeps what was derived from it (the order, fingerprints, the planner's last plans)
# without a comparison. Bounded; a workflow resolved after it was evicted is resolved afresh.
_RESOLVED: OrderedDict[bytes, ResolvedWorkflow] = OrderedDict()
_RESOLVED_KEPT = 8192


def _recalled(key: bytes) -> ResolvedWorkflow | None:
    found = _RESOLVED.get(key)
    if found is not None:
        _RESOLVED.move_to_end(key)
    return found


def _kept(key: bytes, result: ResolvedWorkflow | InvalidWorkflow) -> ResolvedWorkflow | InvalidWorkflow:
    if isinstance(result, ResolvedWorkflow):
        _RESOLVED[key] = result
        if len(_RESOLVED) > _RESOLVED_KEPT:
            _RESOLVED.popitem(last=False)
    return result


@dataclass(frozen=True)
class InvalidWorkflow:
    workflow: Workflow
    errors: tuple[ManifestError, ...]


@dataclass
class Resolution:
    workflows: list[ResolvedWorkflow] = field(default_factory=list)
    invalid: list[InvalidWorkflow] = field(default_factory=list)
    clusters: dict[str, SlurmCluster] = field(default_factory=dict)
    errors: list[ManifestError] = field(default_factory=list)  # not tied to one workflow


def resolve(resources: Iterable[LoadedResource], *, require_cluster: bool = True) -> Resolution:
    """Resolve every workflow among ``resources``.

    With ``require_cluster=False`` and no SlurmCluster among the resources, workflows resolve
    without one: ``reconciler validate`` checks plans kept apart from the cluster definitions.
    """
    resolution = Resolution()
    templates: dict[tuple[str, str], WorkflowTemplate] = {}
    workflows: list[LoadedResource] = []
    seen: dict[tuple[str, str, str], SourceLocation] = {}
    for loaded in resources:
        if loaded.key in seen:
            first = seen[loaded.key]
            resolution.errors.append(ManifestError(
                loaded.location.file, loaded.location.line, "metadata.name",
                f"{loaded.key[0]} {loaded.key[1]}/{loaded.key[2]} is already declared at {first.file}:{first.line}",
            ))
            continue
        seen[loaded.key] = loaded.location
        resource = loaded.resource
        if isinstance(resource, SlurmCluster):
            resolution.clusters[resource.metadata.name] = resource
        elif isinstance(resource, WorkflowTemplate):
            templates[(resource.metadata.namespace, resource.metadata.name)] = resource
        else:
            workflows.append(loaded)
    # What every workflow is resolved against besides itself and its template.
    context = "\n".join([str(require_cluster or bool(resolution.clusters)),
                         *(cluster.model_dump_json() for cluster in resolution.clusters.values())])
    for loaded in workflows:
        workflow = loaded.resource
        assert isinstance(workflow, Workflow)
        ref = workflow.spec.template_ref
        template = templates.get((workflow.metadata.namespace, ref.name)) if ref is not None else None
        key = hashlib.sha256("\n".join([context, repr(loaded.location), workflow.model_dump_json(),
                                         template.model_dump_json() if template is not None else ""]).encode()
                             ).digest()
        result = _recalled(key) or _kept(key, resolve_workflow(
            workflow,
            templates=templates,
            clusters=resolution.clusters,
            location=loaded.location,
            require_cluster=require_cluster or bool(resolution.clusters),
        ))
        if isinstance(result, ResolvedWorkflow):
            resolution.workflows.append(result)
        else:
            resolution.invalid.append(result)
    return resolution


def resolve_workflow(
    workflow: Workflow,
    *,
    templates: dict[tuple[str, str], WorkflowTemplate],
    clusters: dict[str, SlurmCluster],
    location: SourceLocation | None = None,
    require_cluster: bool = True,
) -> ResolvedWorkflow | InvalidWorkflow:
    file = location.file if location else f"{workflow.metadata.namespace}/{workflow.metadata.name}"
    line = location.line if location else None

    def invalid(path: str, problems: list[str]) -> InvalidWorkflow:
        return InvalidWorkflow(workflow, tuple(ManifestError(file, line, path, p) for p in problems))

    spec = workflow.spec
    if spec.template_ref is not None:
        template = templates.get((workflow.metadata.namespace, spec.template_ref.name))
        if template is None:
            return invalid("spec.templateRef.name", [
                f"no WorkflowTemplate {spec.template_ref.name!r} in namespace {workflow.metadata.namespace!r}"
            ])
        try:
            spec = instantiate(workflow, template)
        except TemplateError as exc:
            return invalid("spec.arguments", exc.problems)
    try:
        graph = build_graph(spec.effective_tasks())
    except DagError as exc:
        return invalid("spec.tasks", exc.problems)
    if not require_cluster and not clusters:
        candidates: tuple[SlurmCluster, ...] = ()
    else:
        found = _candidate_clusters(spec.cluster, clusters)
        if isinstance(found, list):
            return invalid("spec.cluster", found)
        candidates = found
    tasks = dict(graph.tasks)
    cluster = candidates[0] if len(candidates) == 1 else None
    return ResolvedWorkflow(workflow, spec, tasks, graph, cluster, location, candidates)


def _candidate_clusters(named: str | list[str] | None, clusters: Mapping[str, SlurmCluster]
                        ) -> tuple[SlurmCluster, ...] | list[str]:
    """The clusters ``spec.cluster`` allows, or the problems with it."""
    declared = ", ".join(sorted(clusters)) or "none"
    if named == AUTO or (named is None and len(clusters) == 1):
        if not clusters:
            return ["cluster auto: no SlurmCluster is declared"]
        return tuple(clusters[name] for name in sorted(clusters))
    if named is None:
        return ["name a cluster: " + (f"{len(clusters)} SlurmClusters are declared ({declared})"
                                      if clusters else "no SlurmCluster is declared")]
    names = [named] if isinstance(named, str) else named
    if not names:
        return ["cluster: the list of candidate clusters is empty"]
    unknown = [name for name in names if name not in clusters]
    if unknown:
        return [f"no SlurmCluster {name!r}; declared: {declared}" for name in unknown]
    return tuple(clusters[name] for name in dict.fromkeys(names))
