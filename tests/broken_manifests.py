"""Hypothesis strategies for broken Workflow manifests, and good ones to mix them with.

Used by the fast test of the loader (tests/unit/test_broken_manifests.py), by the test that
pushes broken files among good ones into a running loop (tests/integration/
test_broken_among_good.py) and by the resilience script. Every manifest ``broken_manifests()``
draws is wrong in one named way, none of which a loader may let through: invalid YAML (an
unclosed bracket or quote, a tab, a duplicate key), a document that is not a mapping, a wrong
apiVersion or kind, an unknown field, a value of the wrong type, a missing or malformed name, a
bad ``dependsOn`` (unknown, itself, twice), a cycle, bad resources, a job with no or two bodies,
an output pattern outside the run directory. A manifest is drawn without its name, which
``render`` fills in, so a caller can make every name unique.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

API_VERSION = "hpc.reconciler.dev/v1alpha1"
NAME = "__name__"  # stands for the workflow's name until render

Document = dict[str, Any]


def workflow_document(name: str, *, tasks: int = 2, partition: str | None = None) -> Document:
    """A good Workflow: a chain of ``tasks`` tasks that each run ``true``."""
    defaults: Document = {"resources": {"time": "00:05:00", "memory": "20M"}}
    if partition is not None:
        defaults["resources"]["partition"] = partition
    chain: list[Document] = []
    for index in range(tasks):
        task: Document = {"name": f"t{index}", "command": ["true"]}
        if index:
            task["dependsOn"] = [f"t{index - 1}"]
        chain.append(task)
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": {"name": name},
            "spec": {"defaults": defaults, "tasks": chain}}


def to_yaml(document: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def good_workflow(name: str, *, tasks: int = 2, partition: str | None = None) -> str:
    return to_yaml(workflow_document(name, tasks=tasks, partition=partition))


@dataclass(frozen=True)
class BrokenManifest:
    """One broken manifest: what is wrong with it, and its text with the name left open."""

    kind: str
    template: str

    def render(self, name: str) -> str:
        return self.template.replace(NAME, name)


Mutation = Callable[[Document], None]


def _task(doc: Document, index: int) -> Document:
    tasks: list[Document] = doc["spec"]["tasks"]
    return tasks[index % len(tasks)]


def _set_in(doc: Document, path: tuple[str | int, ...], value: Any) -> None:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@st.composite
def _unknown_field(draw: st.DrawFn) -> Mutation:
    key = draw(st.sampled_from(["scirpt", "dependson", "taskz", "cpu", "mem", "nmae", "depends_on", "retries"]))
    where = draw(st.sampled_from(["top", "metadata", "spec", "task", "resources"]))
    index = draw(st.integers(0, 5))
    value = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()))

    def mutate(doc: Document) -> None:
        target = {"top": doc, "metadata": doc["metadata"], "spec": doc["spec"], "task": _task(doc, index),
                  "resources": doc["spec"]["defaults"]["resources"]}[where]
        target[key] = value
    return mutate


_WRONG_TYPES: list[tuple[str, Any]] = [
    ("tasks", "all of them"), ("tasks", 5), ("tasks", {"name": "t0"}), ("metadata", "w"), ("spec", ["tasks"]),
    ("dependsOn", 5), ("dependsOn", {"t0": True}), ("cpus", "many"), ("cpus", [1]), ("limit", "twice"),
    ("command", "true"), ("env", ["A=1"]), ("suspend", [1]), ("outputs", "out.txt"), ("array", 3),
]


@st.composite
def _wrong_type(draw: st.DrawFn) -> Mutation:
    field, value = draw(st.sampled_from(_WRONG_TYPES))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        task = _task(doc, index)
        if field in ("tasks", "suspend"):
            doc["spec"][field] = value
        elif field in ("metadata", "spec"):
            doc[field] = value
        elif field == "cpus":
            task.setdefault("resources", {})["cpus"] = value
        elif field == "limit":
            task["retry"] = {"limit": value}
        else:
            task[field] = value
    return mutate


@st.composite
def _missing_name(draw: st.DrawFn) -> Mutation:
    which = draw(st.sampled_from(["metadata", "task"]))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        del (doc["metadata"] if which == "metadata" else _task(doc, index))["name"]
    return mutate


@st.composite
def _malformed_name(draw: st.DrawFn) -> Mutation:
    which = draw(st.sampled_from(["task", "metadata"]))
    # A Workflow's name may hold dots and be longer than a task's.
    bad = draw(st.sampled_from(["Upper", "under_score", "-dash", "sp ace", "", "packjob-x",
                                *(["dot.", "x" * 64] if which == "task" else ["Upper.Case"])]))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        (_task(doc, index) if which == "task" else doc["metadata"])["name"] = bad
    return mutate


@st.composite
def _bad_depends_on(draw: st.DrawFn) -> Mutation:
    how = draw(st.sampled_from(["unknown", "itself", "twice", "cycle"]))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        tasks = doc["spec"]["tasks"]
        task = _task(doc, index)
        if how == "unknown":
            task["dependsOn"] = [*task.get("dependsOn", []), "nowhere"]
        elif how == "itself":
            task["dependsOn"] = [*task.get("dependsOn", []), task["name"]]
        elif how == "twice":
            task["dependsOn"] = [tasks[0]["name"], tasks[0]["name"]] if task is not tasks[0] else ["t1", "t1"]
        else:
            tasks[0]["dependsOn"] = [tasks[-1]["name"]]
    return mutate


_BAD_RESOURCES: list[tuple[str, Any]] = [
    ("memory", "4 gigs"), ("memory", "-1G"), ("time", "forever"), ("time", "1:2:3:4"), ("cpus", 0), ("nodes", -1),
    ("partition", "de bug"), ("partition", "a;b"), ("gres", "gpu\n1"), ("account", "PackJob"),
]


@st.composite
def _bad_resources(draw: st.DrawFn) -> Mutation:
    field, value = draw(st.sampled_from(_BAD_RESOURCES))
    on_task = draw(st.booleans())
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        target = _task(doc, index).setdefault("resources", {}) if on_task else doc["spec"]["defaults"]["resources"]
        target[field] = value
    return mutate


@st.composite
def _bad_body(draw: st.DrawFn) -> Mutation:
    how = draw(st.sampled_from(["none", "both", "empty", "approval-with-script", "nul"]))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        task = _task(doc, index)
        if how == "none":
            del task["command"]
        elif how == "both":
            task["script"] = "echo hi"
        elif how == "empty":
            task["command"] = []
        elif how == "approval-with-script":
            task["type"] = "approval"
        else:
            task["command"] = ["echo", "a\0b"]
    return mutate


@st.composite
def _bad_outputs(draw: st.DrawFn) -> Mutation:
    pattern = draw(st.sampled_from(["/etc/passwd", "../up.txt", "a/../../b", "/", "./", "x/\0"]))
    index = draw(st.integers(0, 5))

    def mutate(doc: Document) -> None:
        _task(doc, index)["outputs"] = ["ok.txt", pattern]
    return mutate


@st.composite
def _bad_identity(draw: st.DrawFn) -> Mutation:
    field, value = draw(st.sampled_from([("kind", "Workfow"), ("kind", None), ("apiVersion", "v1"),
                                         ("apiVersion", "hpc.reconciler.dev/v2")]))

    def mutate(doc: Document) -> None:
        if value is None:
            del doc[field]
        else:
            doc[field] = value
    return mutate


_PARSEABLE: dict[str, Callable[[], st.SearchStrategy[Mutation]]] = {
    "unknown field": _unknown_field, "wrong type": _wrong_type, "missing name": _missing_name,
    "malformed name": _malformed_name, "bad dependsOn": _bad_depends_on, "bad resources": _bad_resources,
    "bad job body": _bad_body, "bad outputs": _bad_outputs, "bad apiVersion or kind": _bad_identity,
}


@st.composite
def parseable_broken(draw: st.DrawFn) -> BrokenManifest:
    """A document YAML reads, that no Workflow model or DAG check accepts."""
    kind = draw(st.sampled_from(sorted(_PARSEABLE)))
    doc = workflow_document(NAME, tasks=draw(st.integers(2, 4)))
    # One mutation: two could undo each other (a body removed, then one added).
    draw(_PARSEABLE[kind]())(doc)
    return BrokenManifest(kind, to_yaml(doc))


@st.composite
def unparseable(draw: st.DrawFn) -> BrokenManifest:
    """A text that is not YAML, or not one mapping: the damage lands on a drawn line."""
    lines = good_workflow(NAME, tasks=draw(st.integers(2, 4))).splitlines()
    at = draw(st.integers(1, len(lines)))
    how = draw(st.sampled_from(["bracket", "quote", "tab", "duplicate key", "list", "scalar"]))
    if how == "list":
        return BrokenManifest("not a mapping", "- " + "\n- ".join(line.strip() for line in lines) + "\n")
    if how == "scalar":
        return BrokenManifest("not a mapping", f"just a sentence about {NAME}\n")
    if how == "duplicate key":
        return BrokenManifest("invalid YAML", "\n".join([*lines, "kind: Workflow"]) + "\n")
    damage = {"bracket": "oops: [unclosed", "quote": 'oops: "unterminated', "tab": "\toops: tab"}[how]
    indent = lines[at - 1][: len(lines[at - 1]) - len(lines[at - 1].lstrip())]
    return BrokenManifest("invalid YAML", "\n".join([*lines[:at], indent + damage, *lines[at:]]) + "\n")


def broken_manifests() -> st.SearchStrategy[BrokenManifest]:
    return st.one_of(parseable_broken(), unparseable())


def sample(count: int, *, strategy: st.SearchStrategy[BrokenManifest] | None = None) -> list[BrokenManifest]:
    """``count`` different manifests drawn outside a test (the same ones every time), taking the
    kinds of breakage in turn, for a folder of files."""
    by_kind: dict[str, list[BrokenManifest]] = {}
    seen: set[str] = set()

    @settings(max_examples=count * 5, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy if strategy is not None else broken_manifests())
    def collect(manifest: BrokenManifest) -> None:
        if manifest.template not in seen:
            seen.add(manifest.template)
            by_kind.setdefault(manifest.kind, []).append(manifest)

    collect()
    queues = [by_kind[kind] for kind in sorted(by_kind)]
    drawn: list[BrokenManifest] = []
    while len(drawn) < count and any(queues):
        drawn.extend(queue.pop(0) for queue in queues if queue)
    return drawn[:count]
