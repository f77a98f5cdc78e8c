"""The CustomResourceDefinitions of group hpc.reconciler.dev, generated from the resource models.

Called by ``reconciler crds`` (which prints them or writes ``crds/``) and by the test that fails
when ``crds/`` drifts from the models. The models stay the single source of truth: nothing here
restates a field, a pattern or a limit; it only translates pydantic's JSON Schema into the
*structural* OpenAPI v3 subset the Kubernetes API server accepts.

Guarantees of every generated schema:

* every node has a ``type``, or is explicitly ``x-kubernetes-int-or-string`` /
  ``x-kubernetes-preserve-unknown-fields``; no ``$ref``, ``anyOf``, ``oneOf``, ``allOf``,
  ``title``, ``patternProperties`` or ``additionalProperties: false`` remain;
* the API server never rejects an object the models accept. Where the OpenAPI subset cannot
  express a model constraint, the schema is looser and the reconciler's own validation of the
  object (which reports it as Invalid) is the check; the looser spots are commented below;
* the CEL rules a model declares (:mod:`reconciler.api.admission`) sit on that model's node as
  its ``x-kubernetes-validations``, unchanged, wherever the model is used;
* the translation fails loudly (``ValueError``) on a JSON Schema construct it does not know, so
  a model change that cannot be expressed structurally is caught when the CRDs are regenerated.
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver

from .cluster import SlurmCluster
from .meta import GROUP, VERSION
from .template import WorkflowTemplate
from .workflow import Workflow

CATEGORY = "slurm-reconciler"

_SCALAR_TYPES = {"string", "integer", "number", "boolean"}

# Validation keywords of OpenAPI v3 that Kubernetes enforces and that mean the same in
# pydantic's JSON Schema; they are copied unchanged.
_COPIED = (
    "description",
    "format",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
)
# Keywords that carry no validation, or that the translation rewrites into something else.
_HANDLED = {
    "required",
    "$ref",
    "$defs",
    "title",
    "type",
    "anyOf",
    "oneOf",
    "allOf",
    "const",
    "default",
    "properties",
    "additionalProperties",
    "patternProperties",
    "items",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "examples",
}


def _dereference(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a top ``$ref`` replaced by its target; sibling keywords win over the target's."""
    if "$ref" not in schema:
        return schema
    ref = schema["$ref"]
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref!r}")
    target = _dereference(defs[ref.removeprefix(prefix)], defs)
    siblings = {k: v for k, v in schema.items() if k != "$ref"}
    return {**target, **siblings}


def _merge_single(schema: dict[str, Any], branch: dict[str, Any], keyword: str) -> dict[str, Any]:
    """A one-branch union folded into its parent; the parent's own keywords win."""
    rest = {k: v for k, v in schema.items() if k != keyword}
    return {**branch, **rest}


def _resolve_union(schema: dict[str, Any], defs: dict[str, Any], path: str) -> tuple[dict[str, Any], bool]:
    """``schema`` with its anyOf/oneOf/allOf folded away, and whether null was one of the branches."""
    for keyword in ("anyOf", "oneOf", "allOf"):
        if keyword not in schema:
            continue
        branches = [_dereference(b, defs) for b in schema[keyword]]
        if keyword == "allOf":
            if len(branches) != 1:
                raise ValueError(f"{path}: allOf with {len(branches)} branches has no structural form")
            return _resolve_union(_merge_single(schema, branches[0], keyword), defs, path)
        nullable = any(b.get("type") == "null" for b in branches)
        branches = [b for b in branches if b.get("type") != "null"]
        if len(branches) == 1:
            merged, inner_nullable = _resolve_union(_merge_single(schema, branches[0], keyword), defs, path)
            return merged, nullable or inner_nullable
        types = {b.get("type") for b in branches}
        rest = {k: v for k, v in schema.items() if k != keyword}
        if types == {"integer", "string"}:
            return {**rest, **_int_or_string(branches, path)}, nullable
        if types == {"string", "array"} and all(b.get("type") == "string" for b in
                                                [b for b in branches if b["type"] == "string"] + [
                                                    b.get("items", {}) for b in branches if b["type"] == "array"]):
            # A name or a list of names (cluster: a, or cluster: [a, b]) has no structural form;
            # the node accepts any value and the model rejects anything else when it is parsed.
            return {**rest, "x-kubernetes-preserve-unknown-fields": True}, nullable
        maps = [b for b in branches if b.get("type") == "object"]
        if len(maps) == 1 and "properties" not in maps[0] and {"object"} < types <= _SCALAR_TYPES | {"object"}:
            # A scalar or a map (approved: true, a note, or the values it approves with) has no
            # structural form either: the node accepts any value and the model checks it.
            return {**rest, "x-kubernetes-preserve-unknown-fields": True}, nullable
        if not types <= _SCALAR_TYPES or any(set(b) - {"type", "description", "title"} for b in branches):
            raise ValueError(f"{path}: only unions of plain scalar types have a structural form, got {branches}")
        if types == {"integer", "number"}:
            return {**rest, "type": "number"}, nullable
        # Any other scalar union (ArgumentValue: str | int | float | bool) has no structural
        # form: types inside anyOf are forbidden, and x-kubernetes-int-or-string would make the
        # API server reject the floats and booleans the model accepts (`enabled: true`,
        # `ratio: 0.5`). So the node accepts any value, and the model rejects lists and maps
        # when the object is parsed.
        return {**rest, "x-kubernetes-preserve-unknown-fields": True}, nullable
    return schema, False


# Keywords that constrain only values of their own type, so one node can carry both branches'.
_INTEGER_ONLY = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_STRING_ONLY = {"pattern", "const", "minLength", "maxLength"}


def _int_or_string(branches: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """A count or a keyword (``cpus: 4`` or ``cpus: auto``) as one int-or-string node that keeps
    both branches' checks: a bound applies only to numbers and a pattern only to strings, so
    neither constrains the other's values."""
    node: dict[str, Any] = {"x-kubernetes-int-or-string": True}
    for branch in branches:
        allowed = _INTEGER_ONLY if branch["type"] == "integer" else _STRING_ONLY
        extra = set(branch) - allowed - {"type", "description", "title"}
        if extra:
            raise ValueError(f"{path}: {sorted(extra)} in an integer-or-string union have no structural form")
        for key in allowed & set(branch):
            if key == "const":
                node["pattern"] = f"^{re.escape(branch['const'])}$"
            else:
                node[key] = branch[key]
        if "description" in branch:
            node.setdefault("description", branch["description"])
    return node


def _structural(schema: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    schema, nullable = _resolve_union(_dereference(schema, defs), defs, path)
    unknown = set(schema) - _HANDLED - set(_COPIED)
    unknown -= {k for k in schema if k.startswith("x-kubernetes-")}
    if unknown:
        raise ValueError(f"{path}: JSON Schema keywords without a CRD translation: {sorted(unknown)}")

    out: dict[str, Any] = {}
    if "type" in schema:
        out["type"] = schema["type"]
    if "const" in schema:
        out["enum"] = [schema["const"]]
    for key in _COPIED:
        if key in schema:
            # Copied, never shared: pydantic reuses one enum list for every use of an enum.
            out[key] = copy.deepcopy(schema[key])
    # JSON Schema 2020-12 gives the bound itself; OpenAPI v3.0 a flag beside minimum/maximum.
    if "exclusiveMinimum" in schema:
        out["minimum"] = schema["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in schema:
        out["maximum"] = schema["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            # Copied, never shared: a model's rules sit on every node where the model is used.
            out[key] = copy.deepcopy(value)
    if nullable and "type" in out:
        out["nullable"] = True

    if "properties" in schema:
        out["properties"] = {
            name: _structural(child, defs, f"{path}.{name}") for name, child in schema["properties"].items()
        }
    additional = schema.get("additionalProperties")
    if "patternProperties" in schema:
        # Kubernetes has no patternProperties; the key pattern (env variable names) is left
        # to the model, and the value schema becomes the map's value schema.
        values = list(schema["patternProperties"].values())
        if len(values) != 1 or additional not in (None, False):
            raise ValueError(f"{path}: patternProperties beyond a single pattern have no structural form")
        additional = values[0]
    if isinstance(additional, dict):
        if "properties" in out:
            raise ValueError(f"{path}: properties and a schema for additionalProperties are exclusive in a CRD")
        out["additionalProperties"] = _structural(additional, defs, f"{path}.*")
    elif additional is True or (out.get("type") == "object" and "properties" not in out and additional is None):
        # A free-form map (dict[str, Any]); without this the API server would prune its content.
        out["x-kubernetes-preserve-unknown-fields"] = True
    # additionalProperties: false (extra="forbid") is forbidden in a CRD: Kubernetes prunes
    # unknown fields instead, and the model still rejects them in Git mode.
    if "items" in schema:
        out["items"] = _structural(schema["items"], defs, f"{path}[]")
    if schema.get("required"):
        out["required"] = list(schema["required"])

    # Kubernetes applies defaults itself, so only values it can apply unambiguously are kept:
    # scalars. A null default means "unset", which pruning already gives.
    default = schema.get("default")
    if isinstance(default, (str, int, float, bool)):
        out["default"] = default

    if "type" not in out and not (
        out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise ValueError(f"{path}: no type could be derived")
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of one resource kind."""
    source = model.model_json_schema(by_alias=True, mode="validation")
    defs = source.get("$defs", {})
    properties: dict[str, Any] = {
        # The API server owns these three; it rejects any schema beyond the type for metadata.
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    for name, child in source["properties"].items():
        if name not in properties:
            properties[name] = _structural(child, defs, name)
            # An optional status is one the reconciler has not written yet; the API server has
            # no use for an explicit null there.
            properties[name].pop("nullable", None)
    schema: dict[str, Any] = {"type": "object"}
    if "description" in source:
        schema["description"] = source["description"]
    schema["properties"] = properties
    required = [name for name in source.get("required", []) if name not in ("apiVersion", "kind", "metadata")]
    if required:
        schema["required"] = required
    return schema


def _column(name: str, json_path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

# Columns of priority 1 appear only with `kubectl get -o wide`, after the default ones.
_PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Workflow": [
        _column("Phase", ".status.phase"),
        _column("Progress", ".status.progress"),
        # Empty unless a person is needed: then why (AwaitingApproval, a Stalled reason).
        _column("Attention", '.status.conditions[?(@.type=="NeedsAttention")].reason'),
        _column("Core-hours", ".status.coreHours", "number"),
        _AGE,
        _column("Cluster", ".status.cluster", priority=1),
        _column("Message", '.status.conditions[?(@.type=="Ready")].message', priority=1),
    ],
    "WorkflowTemplate": [_AGE],
    "SlurmCluster": [
        _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        _column("Version", ".status.slurmVersion"),
        _column("Queued", ".status.queuedJobs", "integer"),
        _column("Running", ".status.runningJobs", "integer"),
        _column("Transport", ".spec.transport"),
        _AGE,
        _column("Workdir", ".spec.workdir", priority=1),
        _column("Message", '.status.conditions[?(@.type=="Ready")].message', priority=1),
    ],
}

_SHORT_NAMES = {"Workflow": ["swf"], "WorkflowTemplate": ["swft"], "SlurmCluster": ["scl"]}
_MODELS: list[type[BaseModel]] = [Workflow, WorkflowTemplate, SlurmCluster]


def _kind(model: type[BaseModel]) -> str:
    return model.model_fields["kind"].default


def _definition(model: type[BaseModel]) -> dict[str, Any]:
    kind = _kind(model)
    plural = kind.lower() + "s"
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(model)},
    }
    # The reconciler writes status through the status subresource, so a user's spec edit and
    # the reconciler's status write never overwrite each other.
    if "status" in model.model_fields:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = [dict(column) for column in _PRINTER_COLUMNS[kind]]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(_SHORT_NAMES[kind]),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def custom_resource_definitions() -> list[dict[str, Any]]:
    """One apiextensions.k8s.io/v1 CustomResourceDefinition per kind, in a fixed order."""
    return [_definition(model) for model in _MODELS]


class _Representer(RoundTripRepresenter):
    """Quotes every string a YAML 1.1 reader would take for something else.

    kubectl and most Kubernetes tooling read YAML 1.1, where a bare ``on`` (a RetryPolicy
    field) is the boolean true; ruamel writes YAML 1.2 and would leave it bare.
    """

    _yaml11 = VersionedResolver(version=(1, 1))

    def represent_str(self, data: str) -> Any:
        tag = self._yaml11.resolve(ScalarNode, data, (True, False))
        if tag != "tag:yaml.org,2002:str":
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


_Representer.add_representer(str, _Representer.represent_str)


def _yaml() -> YAML:
    yaml = YAML()
    yaml.Representer = _Representer
    # Anchors and aliases would make one CRD's text depend on how the dicts happen to be shared.
    yaml.representer.ignore_aliases = lambda data: True
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    # Long patterns and descriptions stay on one line: a folded regex is hard to review.
    yaml.width = 4096
    return yaml


def _dump(document: dict[str, Any]) -> str:
    stream = io.StringIO()
    _yaml().dump(document, stream)
    return stream.getvalue()


def render_crds_yaml() -> str:
    """All CRDs as one multi-document YAML stream (``---`` between documents)."""
    return "---\n".join(_dump(crd) for crd in custom_resource_definitions())


def crd_filename(crd: dict[str, Any]) -> str:
    """``<group>_<plural>.yaml``, the name kubebuilder-style trees use."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def write_crds(directory: Path | str) -> list[Path]:
    """Write one file per CRD into ``directory`` (created if missing); returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for crd in custom_resource_definitions():
        path = directory / crd_filename(crd)
        path.write_text(_dump(crd), encoding="utf-8")
        paths.append(path)
    return paths
